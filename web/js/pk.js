// PK battle, on both pages: the score bar over the stage (this room on the left), the
// time left, the result, and the other room's host on the stage while it lasts.
import { formatNumber, onLanguageChange, t } from "./i18n.js";
import { el } from "./ui.js";

const RETRY_MS = 3000;

export function bindBattle(conn, stage, bar) {
  let battle = null;  // the running battle: its wire form plus `score`
  let result = null;  // the last battle's result, shown until the next one
  let lastTry = 0;

  const sides = (pk) => {
    const own = Math.max(0, pk.rooms.indexOf(conn.room));
    return [own, 1 - own];
  };

  const guestOf = (pk) => {
    const [, other] = sides(pk);
    return { room: pk.rooms[other], user: pk.hosts[other], label: pk.titles[other] };
  };

  function render() {
    const shown = battle || result;
    bar.hidden = !shown;
    if (!shown) return;
    const [own, other] = sides(shown);
    const score = shown.score || {};
    const points = [score[shown.rooms[own]] || 0, score[shown.rooms[other]] || 0];
    const total = points[0] + points[1];
    const share = total ? Math.round((100 * points[0]) / total) : 50;
    let meta;
    if (battle) {
      const left = Math.max(0, Math.round((battle.ends_at - Date.now()) / 1000));
      const time = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      meta = t("pk.timeLeft", { time });
    } else {
      const winner = shown.winner;
      meta = winner ? t("pk.won", { title: shown.titles[shown.rooms.indexOf(winner)] }) : t("pk.draw");
    }
    bar.dataset.pk = shown.id;
    bar.dataset.score = `${points[0]}:${points[1]}`;
    bar.classList.toggle("ended", !battle);
    bar.replaceChildren(
      el("div", { class: "pk-names" },
        el("span", { class: "own", text: shown.titles[own] }),
        el("span", { class: "meta", text: meta }),
        el("span", { class: "other", text: shown.titles[other] })),
      el("div", { class: "pk-score" },
        el("div", { class: "own", style: `width: ${share}%`, text: formatNumber(points[0]) }),
        el("div", { class: "other", text: formatNumber(points[1]) })),
    );
  }

  function start(pk) {
    battle = { score: {}, ...pk };
    result = null;
    stage.setGuest(guestOf(battle));
    lastTry = Date.now();
    render();
  }

  function end(pk) {
    battle = null;
    result = pk;
    stage.setGuest(null);
    render();
  }

  conn.on("snapshot", (snap) => {
    if (snap.room.pk) start(snap.room.pk);
    else end(snap.room.last_pk);
  });
  conn.on("pk.started", (e) => start(e.pk));
  conn.on("pk.score", (e) => {
    if (battle && battle.id === e.pk) {
      battle.score = e.score;
      render();
    }
  });
  conn.on("pk.ended", (e) => end(e.pk));
  onLanguageChange(render);
  setInterval(() => {
    if (!battle) return;
    render();
    // The other host may not have been publishing yet: ask again now and then.
    const guest = guestOf(battle);
    if (!stage.tiles.has(`${guest.room}/${guest.user}`) && Date.now() - lastTry > RETRY_MS) {
      lastTry = Date.now();
      stage.setGuest(guest);
    }
  }, 1000);
  return { get battle() { return battle; } };
}
