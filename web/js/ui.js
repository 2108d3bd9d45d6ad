// Page building blocks shared by the host and viewer pages. Everything from the
// network goes in with textContent, never innerHTML; every word of ours comes from
// the catalogue.
import { formatPrice, t } from "./i18n.js";

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function chatLine(m, actions = []) {
  const line = el("li", { class: `chat-line role-${m.role}`, "data-seq": String(m.seq) });
  line.append(el("span", { class: "who", text: m.name }), el("span", { class: "text", text: m.text }));
  for (const action of actions) line.append(action);
  return line;
}

export function pollCard(poll, onVote) {
  const card = el("div", { class: "poll", "data-poll": poll.id });
  card.append(el("div", { class: "question", text: poll.question }));
  poll.options.forEach((option, index) => {
    const share = poll.total ? Math.round((option.votes / poll.total) * 100) : 0;
    const row = el("div", { class: "option" + (poll.my_vote === index ? " mine" : "") });
    const bar = el("div", { class: "bar" });
    bar.style.width = `${share}%`;
    row.append(bar, el("span", { class: "label", text: option.text }), el("span", { class: "count", text: `${option.votes}` }));
    if (onVote && poll.open && poll.my_vote === undefined) {
      row.append(el("button", { type: "button", text: t("poll.vote"), onclick: () => onVote(poll, index) }));
    }
    card.append(row);
  });
  const meta = t(poll.open ? "poll.votes" : "poll.closedVotes", { count: poll.total });
  card.append(el("div", { class: "meta", text: meta }));
  return card;
}

export function productCard(product) {
  const card = el("div", { class: "product" });
  if (!product) return card;
  if (product.image) card.append(el("img", { src: product.image, alt: "" }));
  card.append(el("div", { class: "title", text: product.title }));
  if (product.price) card.append(el("div", { class: "price", text: formatPrice(product.price, product.currency) }));
  if (product.url) card.append(el("a", { href: product.url, target: "_blank", rel: "noopener", text: t("product.view") }));
  return card;
}
