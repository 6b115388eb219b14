// podium's only script. Every page works without it; with it, times also show in the reader's
// own zone, text inputs count characters, and live parts follow the server's events.
"use strict";

// <time data-local> also shows the instant in the browser's own time zone, written as the
// server writes the conference's times: the day by its name in the page's language (from
// the root's data-days, Sunday first; a browser may have no Khmer locale) and a 24-hour time.
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const days = (document.documentElement.dataset.days ?? "").split(",");
for (const time of document.querySelectorAll("time[data-local]")) {
  const at = new Date(time.getAttribute("datetime"));
  if (Number.isNaN(at.getTime())) continue;
  const day = days[at.getDay()] ?? "";
  const hhmm = [at.getHours(), at.getMinutes()].map((n) => String(n).padStart(2, "0")).join(":");
  const local = document.createElement("span");
  local.className = "local";
  local.textContent = `${day} ${hhmm} (${time.dataset.local}${zone ? ", " + zone : ""})`;
  time.append(local);
}

// <textarea|input maxlength> with a data-counter element: a live count of characters left.
for (const input of document.querySelectorAll("[data-counter]")) {
  const counter = document.getElementById(input.dataset.counter);
  const max = Number(input.getAttribute("maxlength"));
  const update = () => {
    counter.querySelector(".n").textContent = String(max - [...input.value].length);
  };
  input.addEventListener("input", update);
  update();
}

// A screen reader hears a poll's question and new count of ballots when it changes, at most
// every five seconds (politely, from the poll's [data-announce] line), not every bar of every
// update: results can change ten times a second, and the whole region stays there to read.
const ANNOUNCE_EVERY_MS = 5000;
const announced = new Map();
// What a region says: its [data-say] summary where it has one (the speaker page's state and
// link, not their changing figures), else its count of ballots.
const saying = (region) =>
  (region.querySelector("[data-say]") ?? region.querySelector(".meta"))?.textContent ?? "";
// `shown`: what the region said before this event replaced it.
const announce = (page, key, region, shown) => {
  const line = page.querySelector(`[data-announce="${CSS.escape(key)}"]`);
  const count = () => saying(region);
  if (!line) return;
  // Before the stream's first event the page said what it was rendered with: only a change
  // from that is said (a stream that opens with a snapshot of what the page shows says
  // nothing; one that follows on from the page's position says its first change).
  if (!announced.has(key)) {
    announced.set(key, { at: 0, timer: 0, said: shown });
    line.dataset.following = "";
    if (count() === shown) return;
  }
  const state = announced.get(key);
  const say = () => {
    state.timer = 0;
    state.at = Date.now();
    // The newest count, read when it is said: the region may have changed since.
    const now = count();
    if (now === state.said) return;
    state.said = now;
    line.textContent = `${line.dataset.label}: ${now}`;
  };
  const wait = state.at + ANNOUNCE_EVERY_MS - Date.now();
  if (wait <= 0) say();
  else if (!state.timer) state.timer = setTimeout(say, wait);
};

// [data-live="/live/results?poll=..."]: one stream for the page; each event names its part
// on the first line and carries the fragment that replaces that part's [data-poll] region.
// EventSource resumes after a dropped connection by itself. A page left for another is closed
// at once: a browser keeps at most six HTTP/1.1 connections to a server, and pages kept for
// the back button must not hold them; coming back opens the stream again.
let sources = [];
const follow = () => {
  for (const page of document.querySelectorAll("[data-live]")) {
    if (!page.dataset.live) continue;
    const source = new EventSource(page.dataset.live);
    source.addEventListener("update", (event) => {
      const cut = event.data.indexOf("\n");
      const region = page.querySelector(`[data-poll="${CSS.escape(event.data.slice(0, cut))}"]`);
      // Never pull a control from under the reader: while the focus is inside, wait.
      if (!region || region.contains(document.activeElement)) return;
      const shown = saying(region);
      const template = document.createElement("template");
      template.innerHTML = event.data.slice(cut + 1);
      region.replaceChildren(template.content);
      announce(page, event.data.slice(0, cut), region, shown);
    });
    sources.push(source);
  }
};
follow();
addEventListener("pagehide", () => {
  for (const source of sources) source.close();
  sources = [];
});
addEventListener("pageshow", (event) => {
  if (event.persisted) follow();
});
