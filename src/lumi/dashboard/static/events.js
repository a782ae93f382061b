// Events: topics with rates, a live tail of one topic, dead letters with reason and replay.
import { api, fmtTime, h, json, live, onLeave, page, panel, toast } from "/static/core.js";

function topicTable(topics, selected) {
  if (!topics.length) return h("div.empty", "This app exports no events.");
  return h("table.tbl#topics", h("thead", h("tr", h("th", "topic"), h("th", "published by"), h("th", "subscribers"), h("th.num", "events/s (10 s)"), h("th.num", "seen"), h("th.num", "dead letters"))),
    h("tbody", topics.map((t) => h(`tr.click${t.topic === selected ? ".sel" : ""}`, { dataset: { topic: t.topic }, onclick: () => { location.hash = `#/events/${t.topic}`; } },
      h("td", h("div.mono", t.topic), t.doc ? h("div.muted", { style: "font-size:12px" }, t.doc) : null),
      h("td", t.publisher),
      h("td", h("div.chips", t.subscribers.map((s) => h("span.chip", `${s.service}.${s.handler}`)))),
      h("td.num.rate", t.per_second_10s.toFixed(2)), h("td.num", t.seen),
      h("td.num", t.dead_letters ? h("span.badge.bad", t.dead_letters) : "0")))));
}

function eventCard(event) {
  return h("div.evt", { dataset: { id: event.id } },
    h("div.top", h("span.mono", fmtTime(event.time)), h("span.badge.event", event.type), event.partitionkey ? h("span", `key ${event.partitionkey}`) : null,
      event.correlationid ? h("a.mono", { href: `#/traces/${event.correlationid}`, title: "trace of the request that published it" }, event.correlationid.slice(0, 12) + "…") : null,
      h("span.mono.id", { title: event.id }, event.id)),
    h("pre", json(event.data)));
}

function deadLetterTable(letters, reload) {
  if (!letters.length) return h("div.empty#no-dead-letters", "No dead letters. Events a consumer gives up on land here, with the reason.");
  const replay = async (letter, button) => {
    button.disabled = true;
    try {
      const { replayed } = await api("/api/deadletters/replay", { topic: letter.topic, group: letter.group, ids: [letter.id] });
      toast(`replayed ${replayed} event to ${letter.group}`);
    } catch (err) {
      toast(`replay failed: ${err.message}`);
    }
    await reload();
  };
  return h("table.tbl#dead-letters", h("thead", h("tr", h("th", "event"), h("th", "group"), h("th.num", "attempts"), h("th", "reason"), h("th", "data"), h("th", ""))),
    h("tbody", letters.map((d) => {
      const button = h("button.small.replay", { type: "button" }, "Replay");
      button.addEventListener("click", () => replay(d, button));
      return h("tr", { dataset: { id: d.id } },
        h("td", h("div.mono", d.topic), h("div.muted.mono", { style: "font-size:11px" }, d.id), h("div.muted", { style: "font-size:12px" }, fmtTime(d.time))),
        h("td", d.group), h("td.num", d.attempts),
        h("td.reason", { style: "max-width:420px;color:#991b1b" }, d.reason),
        h("td", h("pre.mono", { style: "margin:0;max-width:320px;white-space:pre-wrap;font-size:11.5px" }, JSON.stringify(d.event.data))),
        h("td", button));
    })));
}

export async function renderEvents(main, args) {
  let selected = args[0] || "";
  const topicsBody = h("div");
  const tailBody = h("div.tail#tail");
  const deadBody = h("div");
  const tailTitle = h("span");
  main.append(page("Events", "topics, a live tail, and dead letters"),
    h("div.stack",
      panel("Topics", topicsBody),
      h("section.panel", h("h2", "Live tail ", tailTitle), tailBody),
      h("section.panel", h("h2", "Dead letters"), deadBody)));
  let topics = [];
  const loadTopics = async () => {
    const data = await api("/api/events");
    topics = data.topics;
    if (!selected && topics.length) selected = topics[0].topic;
    topicsBody.replaceChildren(data.unreachable ? h("div.banner", data.unreachable) : "", topicTable(topics, selected));
  };
  const loadDead = async () => {
    const data = await api("/api/deadletters");
    deadBody.replaceChildren(deadLetterTable(data.dead_letters, async () => { await loadDead(); await loadTopics(); }));
  };
  await Promise.all([loadTopics(), loadDead()]);
  const timer = setInterval(() => loadTopics().catch(() => {}), 2000);
  onLeave(() => clearInterval(timer));
  if (selected) {
    tailTitle.replaceChildren(h("span.chip", selected));
    tailBody.replaceChildren(h("div.empty#tail-empty", `Waiting for events on ${selected}…`));
    const source = live(`/api/live/events?topic=${encodeURIComponent(selected)}`, {
      event: ({ event }) => {
        tailBody.querySelector("#tail-empty")?.remove();
        tailBody.prepend(eventCard(event));
        while (tailBody.children.length > 200) tailBody.lastChild.remove();
      },
    });
    onLeave(() => source.close());
    const deadTimer = setInterval(() => loadDead().catch(() => {}), 3000);
    onLeave(() => clearInterval(deadTimer));
  }
}
