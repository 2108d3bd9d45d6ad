// The pages' words, in one catalogue per language. Every user-visible string comes
// from here; sentences are whole entries with {placeholders}, never concatenated
// fragments, and counts go through Intl.PluralRules. What people typed (chat, names,
// poll options, products) is never translated and is always inserted as text.

export const LANGUAGES = { en: "English", "zh-CN": "简体中文" };
const STORAGE_KEY = "roomserver.lang";

export const CATALOGUES = {
  en: {
    "replay.page": "Replay",
    "replay.title": "Replay · {room}",
    "replay.loading": "loading…",
    "replay.ready": "replay",
    "replay.empty": "This recording has no video.",
    "replay.failed": "The recording could not be loaded; the link may have expired.",
    "page.viewer": "Live room",
    "page.host": "Host · Live room",
    "status.connecting": "connecting…",
    "status.live": "connected",
    "status.away": "reconnecting…",
    "status.error": "error",
    "status.left": "left",
    "stage.waiting": "The stream appears here when the host is live.",
    "stage.preview": "Your camera preview appears here.",
    "stage.unmute": "🔇 Tap to unmute",
    "media.camera": "Camera",
    "media.microphone": "Microphone",
    "media.goLive": "Go live",
    "media.endStream": "End stream",
    "rec.badge": "● REC",
    "rec.badgeTitle": "This stream is being recorded",
    "rec.start": "Record",
    "rec.stop": "Stop recording",
    "rec.whenLive": "Record whenever live",
    "media.leaveStage": "Leave the stage",
    "media.noCamera": "The camera or microphone could not be opened.",
    "media.failed": "The stream could not start; try again.",
    "media.you": "You",
    "section.product": "Product",
    "section.polls": "Polls",
    "section.draw": "Lucky draw",
    "section.chat": "Chat",
    "section.startPoll": "Start a poll",
    "section.pinned": "Pinned product",
    "section.hands": "Raised hands",
    "section.stage": "On stage",
    "chat.placeholder": "Say something",
    "chat.label": "Chat message",
    "chat.send": "Send",
    "chat.you": "You",
    "chat.sending": "sending…",
    "chat.sent": "sent",
    "chat.failed": "failed",
    "chat.retry": "Retry",
    "action.like": "❤ Like",
    "action.hand": "✋ Raise hand",
    "action.invite": "Invite",
    "action.end": "End",
    "action.endRoom": "End the live session",
    "action.delete": "Delete",
    "action.mute": "Mute for 10 minutes",
    "action.kick": "Kick",
    "action.ban": "Ban",
    "poll.question": "Question",
    "poll.options": "Options, separated by commas",
    "poll.duration": "Seconds (optional)",
    "poll.start": "Start poll",
    "poll.vote": "Vote",
    "poll.close": "Close poll",
    "poll.votes": { one: "{count} vote", other: "{count} votes" },
    "poll.closedVotes": { one: "Closed · {count} vote", other: "Closed · {count} votes" },
    "product.title": "Title",
    "product.price": "Price",
    "product.currency": "Currency",
    "product.image": "Image URL (https://…)",
    "product.link": "Link (https://…)",
    "product.pin": "Pin",
    "product.unpin": "Unpin",
    "product.view": "View product",
    "draw.prize": "Prize",
    "draw.winners": "Number of winners",
    "draw.kind": "Who can enter",
    "draw.kind.present": "Everyone present",
    "draw.kind.keyword": "Chat a keyword",
    "draw.kind.voted": "Voted in the latest poll",
    "draw.keyword": "Keyword",
    "draw.duration": "Duration in seconds",
    "draw.start": "Start draw",
    "draw.title": "🎁 {prize} × {count}",
    "draw.rule.keyword": "Type “{keyword}” in the chat to enter",
    "draw.rule.voted": "Everyone who votes in the poll enters",
    "draw.rule.present": "Everyone here enters",
    "draw.status": { one: "{count} entry · ends {time}", other: "{count} entries · ends {time}" },
    "draw.commitment": "Commitment: {value}…",
    "draw.resultTitle": "🎉 {prize}",
    "draw.winnersList": "Winners: {list}",
    "draw.nobody": "Nobody entered.",
    "draw.resultMeta": { one: "{count} entry · seed {seed}…", other: "{count} entries · seed {seed}…" },
    "notice.noToken": "This link has no room token.",
    "notice.handRaised": "Hand raised.",
    "notice.onStage": "You are on stage.",
    "notice.invited": "The host invites you on stage. Join?",
    "notice.declined": "The invitation was declined.",
    "notice.gap": "Some older messages are no longer available.",
    "notice.ended": "The live session has ended.",
    "notice.removed": "You were removed from the room.",
    "notice.confirmEnd": "End the live session for everyone?",
    "notice.pollFirst": "Start a poll first.",
    "counter.viewers": "Viewers",
    "counter.likes": "Likes",
    "language": "Language",
    "error.muted": "You are muted until {time}.",
    "error.rate_limited": { one: "Slow down: try again in {count} second.", other: "Slow down: try again in {count} seconds." },
    "error.blocked": "That message was refused by the room's filter.",
    "error.banned": "You are banned from this room.",
    "error.unauthorized": "This link is not valid (anymore).",
    "error.not_found": "This room does not exist or has ended.",
    "error.already_voted": "You already voted.",
    "error.poll_closed": "This poll is closed.",
    "error.forbidden": "You are not allowed to do that.",
    "error.not_joined": "You are not in this room (anymore).",
    "error.bad_request": "That request was not valid.",
    "error.unknown_type": "This page and the server do not understand each other; reload the page.",
    "error.cohost_full": "The stage is full.",
    "error.not_invited": "There is no invitation for you.",
    "error.pk_busy": "That room is already in a PK battle or has an invitation pending.",
    "section.pk": "PK battle",
    "pk.room": "Other room's ID",
    "pk.duration": "Duration in seconds",
    "pk.invite": "Invite to PK",
    "pk.sent": "PK invitation sent to {room}.",
    "pk.invited": "{title} invites you to a PK battle.",
    "pk.accept": "Accept",
    "pk.decline": "Decline",
    "pk.declined": "The other host declined the PK battle.",
    "pk.end": "End PK",
    "pk.timeLeft": "{time} left",
    "pk.won": "{title} wins!",
    "pk.draw": "It's a draw!",
    "error.unavailable": "The service is busy; please try again shortly.",
    "error.internal": "Something went wrong on the server.",
    "error.disconnected": "Not connected; retrying…",
  },
  "zh-CN": {
    "replay.page": "回放",
    "replay.title": "回放 · {room}",
    "replay.loading": "加载中…",
    "replay.ready": "回放",
    "replay.empty": "这段录制没有视频。",
    "replay.failed": "无法加载录制，链接可能已过期。",
    "page.viewer": "直播间",
    "page.host": "主播 · 直播间",
    "status.connecting": "连接中…",
    "status.live": "已连接",
    "status.away": "正在重连…",
    "status.error": "出错了",
    "status.left": "已离开",
    "stage.waiting": "主播开播后，直播画面会显示在这里。",
    "stage.preview": "摄像头预览会显示在这里。",
    "stage.unmute": "🔇 点击开启声音",
    "media.camera": "摄像头",
    "media.microphone": "麦克风",
    "media.goLive": "开始直播",
    "media.endStream": "结束推流",
    "rec.badge": "● 录制中",
    "rec.badgeTitle": "本场直播正在录制",
    "rec.start": "开始录制",
    "rec.stop": "停止录制",
    "rec.whenLive": "开播时自动录制",
    "media.leaveStage": "下麦",
    "media.noCamera": "无法打开摄像头或麦克风。",
    "media.failed": "推流失败，请重试。",
    "media.you": "我",
    "section.product": "商品",
    "section.polls": "投票",
    "section.draw": "幸运抽奖",
    "section.chat": "聊天",
    "section.startPoll": "发起投票",
    "section.pinned": "置顶商品",
    "section.hands": "申请连麦",
    "section.stage": "连麦中",
    "chat.placeholder": "说点什么",
    "chat.label": "聊天消息",
    "chat.send": "发送",
    "chat.you": "我",
    "chat.sending": "发送中…",
    "chat.sent": "已发送",
    "chat.failed": "发送失败",
    "chat.retry": "重试",
    "action.like": "❤ 点赞",
    "action.hand": "✋ 申请连麦",
    "action.invite": "邀请",
    "action.end": "结束",
    "action.endRoom": "结束直播",
    "action.delete": "删除",
    "action.mute": "禁言 10 分钟",
    "action.kick": "踢出",
    "action.ban": "拉黑",
    "poll.question": "问题",
    "poll.options": "选项，用逗号分隔",
    "poll.duration": "秒数（可选）",
    "poll.start": "发起投票",
    "poll.vote": "投票",
    "poll.close": "结束投票",
    "poll.votes": { other: "{count} 票" },
    "poll.closedVotes": { other: "已结束 · {count} 票" },
    "product.title": "名称",
    "product.price": "价格",
    "product.currency": "币种",
    "product.image": "图片链接（https://…）",
    "product.link": "商品链接（https://…）",
    "product.pin": "置顶",
    "product.unpin": "取消置顶",
    "product.view": "查看商品",
    "draw.prize": "奖品",
    "draw.winners": "中奖人数",
    "draw.kind": "参与方式",
    "draw.kind.present": "所有在场观众",
    "draw.kind.keyword": "发送口令",
    "draw.kind.voted": "参与最新投票的观众",
    "draw.keyword": "口令",
    "draw.duration": "时长（秒）",
    "draw.start": "开始抽奖",
    "draw.title": "🎁 {prize} × {count}",
    "draw.rule.keyword": "在聊天中发送“{keyword}”即可参与",
    "draw.rule.voted": "参与投票即可参与抽奖",
    "draw.rule.present": "在场的所有人都已参与",
    "draw.status": { other: "已有 {count} 人参与 · {time} 截止" },
    "draw.commitment": "承诺值：{value}…",
    "draw.resultTitle": "🎉 {prize}",
    "draw.winnersList": "中奖者：{list}",
    "draw.nobody": "没有人参与。",
    "draw.resultMeta": { other: "共 {count} 人参与 · 种子 {seed}…" },
    "notice.noToken": "此链接缺少直播间令牌。",
    "notice.handRaised": "已申请连麦。",
    "notice.onStage": "你已上麦。",
    "notice.invited": "主播邀请你连麦，是否加入？",
    "notice.declined": "对方拒绝了连麦邀请。",
    "notice.gap": "部分较早的消息已无法查看。",
    "notice.ended": "本场直播已结束。",
    "notice.removed": "你已被移出直播间。",
    "notice.confirmEnd": "确定为所有人结束本场直播吗？",
    "notice.pollFirst": "请先发起一个投票。",
    "counter.viewers": "观看人数",
    "counter.likes": "点赞数",
    "language": "语言",
    "error.muted": "你已被禁言，{time} 解除。",
    "error.rate_limited": { other: "发言太快了，请 {count} 秒后再试。" },
    "error.blocked": "该消息包含违禁词，未能发送。",
    "error.banned": "你已被禁止进入此直播间。",
    "error.unauthorized": "此链接无效或已过期。",
    "error.not_found": "直播间不存在或已结束。",
    "error.already_voted": "你已经投过票了。",
    "error.poll_closed": "投票已结束。",
    "error.forbidden": "你没有权限进行此操作。",
    "error.not_joined": "你已不在此直播间。",
    "error.bad_request": "请求无效。",
    "error.unknown_type": "页面与服务器版本不一致，请刷新页面。",
    "error.cohost_full": "连麦人数已满。",
    "error.not_invited": "你没有收到连麦邀请。",
    "error.pk_busy": "该直播间正在 PK 或有待处理的邀请。",
    "section.pk": "PK 对战",
    "pk.room": "对方直播间 ID",
    "pk.duration": "时长（秒）",
    "pk.invite": "发起 PK",
    "pk.sent": "已向 {room} 发出 PK 邀请。",
    "pk.invited": "{title} 邀请你进行 PK 对战。",
    "pk.accept": "接受",
    "pk.decline": "拒绝",
    "pk.declined": "对方主播拒绝了 PK 邀请。",
    "pk.end": "结束 PK",
    "pk.timeLeft": "剩余 {time}",
    "pk.won": "{title} 获胜！",
    "pk.draw": "平局！",
    "error.unavailable": "服务繁忙，请稍后再试。",
    "error.internal": "服务器出错了。",
    "error.disconnected": "连接已断开，正在重试…",
  },
};

function pick(candidates) {
  for (const raw of candidates) {
    if (!raw) continue;
    const code = String(raw).toLowerCase();
    if (code.startsWith("zh")) return "zh-CN";
    if (code.startsWith("en")) return "en";
  }
  return null;
}

function initialLanguage() {
  const fromLink = new URLSearchParams(location.search).get("lang");
  let stored = null;
  try { stored = localStorage.getItem(STORAGE_KEY); } catch { stored = null; }
  return pick([fromLink]) || pick([stored]) || pick(navigator.languages || [navigator.language]) || "en";
}

export let lang = initialLanguage();
const listeners = new Set();

export function has(key) {
  return key in CATALOGUES[lang];
}

export function t(key, params = {}) {
  const entry = CATALOGUES[lang][key];
  if (entry === undefined) {
    console.error(`missing ${lang} text: ${key}`);
    return key;
  }
  let text = entry;
  if (typeof entry === "object") {
    const count = Number(params.count ?? 0);
    const form = new Intl.PluralRules(lang).select(count);
    text = entry[form] ?? entry.other;
  }
  return text.replace(/\{(\w+)\}/g, (_, name) => {
    const value = params[name];
    return typeof value === "number" ? formatNumber(value) : String(value ?? "");
  });
}

export function formatNumber(n) {
  return new Intl.NumberFormat(lang).format(n);
}

export function formatTime(ts) {
  return new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(ts));
}

export function formatPrice(price, currency) {
  const amount = Number(price);
  if (currency && Number.isFinite(amount)) {
    try {
      return new Intl.NumberFormat(lang, { style: "currency", currency }).format(amount);
    } catch {
      // An unknown currency code: show what the shop typed.
    }
  }
  return currency ? `${price} ${currency}` : String(price);
}

export function formatList(items) {
  return new Intl.ListFormat(lang, { type: "conjunction" }).format(items);
}

// Translate the static parts of a page: data-i18n (text), data-i18n-placeholder,
// data-i18n-aria-label and data-i18n-title.
export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const [attr, key] of [["placeholder", "i18nPlaceholder"], ["aria-label", "i18nAriaLabel"], ["title", "i18nTitle"]]) {
    for (const node of root.querySelectorAll(`[data-${attr === "aria-label" ? "i18n-aria-label" : "i18n-" + attr}]`)) {
      node.setAttribute(attr, t(node.dataset[key]));
    }
  }
  const titleKey = document.body.dataset.i18nPage;
  if (titleKey) document.title = t(titleKey);
}

export function setLanguage(code) {
  if (!(code in CATALOGUES)) return;
  lang = code;
  try { localStorage.setItem(STORAGE_KEY, code); } catch { /* private mode: not remembered */ }
  applyStatic();
  for (const listener of listeners) listener(code);
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

// A language picker; language names are shown in their own language.
export function languagePicker(select) {
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = name;
    option.lang = code;
    select.append(option);
  }
  select.value = lang;
  select.addEventListener("change", () => setLanguage(select.value));
}
