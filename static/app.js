// Small progressive enhancements; every page works without this file (times then read,
// and date filters are then taken, in UTC, as the page says).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  showTimes();
  askFirst();
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.classList.add("copied");
      } catch (error) {
        window.prompt("Copy:", button.dataset.copy);
      }
    });
  });
});

// One time zone on every page, stated above its content: the viewer's own (by name), or UTC
// a click away. The choice is remembered (localStorage) and told to the server (a cookie),
// whose activity chart counts by the same days; the From/To filters read the same zone.
// Every time is a <time data-local="precision"> whose text says UTC, as without JavaScript.
const ZONE_KEY = "auditLog.timeZone";
const ZONE_COOKIE = "auditLogTimeZone";  // audit_app/audit/views.py reads it
const localZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const localIsUtc = /^(Etc\/)?(UTC|UCT|GMT|Universal|Zulu|Greenwich)([+-]?0)?$/.test(localZone);
const FORMATS = {
  second: { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "short" },
  minute: { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23", timeZoneName: "short" },
  date: { weekday: "short", year: "numeric", month: "short", day: "numeric" },
  day: { month: "short", day: "numeric" },  // the chart's axis
  hour: { hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
};

function chosenZone() {
  try {
    return localIsUtc || window.localStorage.getItem(ZONE_KEY) === "utc" ? "UTC" : localZone;
  } catch (error) {
    return localZone;
  }
}

function pad(number) {
  return String(number).padStart(2, "0");
}

// The wall-clock "YYYY-MM-DDTHH:MM:SS" of a moment in the chosen zone (for the inputs).
function wallClock(moment, zone) {
  if (zone === "UTC") {
    return moment.toISOString().slice(0, 19);
  }
  return `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}` +
    `T${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}`;
}

// The moment a wall-clock value of the inputs means in the chosen zone.
function momentOf(value, zone) {
  const text = value.length === 16 ? `${value}:00` : value;
  return new Date(zone === "UTC" ? `${text}Z` : text);
}

function showTimes() {
  const zone = chosenZone();
  const formats = {};
  const shown = (precision, text) => {
    const when = new Date(text);
    if (Number.isNaN(when.getTime())) return null;
    const key = FORMATS[precision] ? precision : "second";
    formats[key] = formats[key] || new Intl.DateTimeFormat(undefined,
      { ...FORMATS[key], timeZone: zone === "UTC" ? "UTC" : undefined });
    return formats[key].format(when);
  };
  document.querySelectorAll("time[data-local]").forEach((node) => {
    const text = shown(node.dataset.local, node.getAttribute("datetime"));
    if (text) node.textContent = text;
  });
  document.querySelectorAll("title[data-when]").forEach((node) => {  // a chart bar's tooltip
    const text = shown(node.dataset.local, node.dataset.when);
    if (text) node.textContent = text + (node.dataset.rest || "");
  });
  const hint = document.getElementById("tz-hint");
  if (hint) {
    hint.textContent = zone !== "UTC" ? `Dates and times are in ${zone}.`
      : localIsUtc ? "Dates and times are UTC, your browser's time zone." : "Dates and times are UTC.";
  }
  const toggle = document.getElementById("tz-toggle");
  if (toggle) {
    toggle.hidden = false;
    toggle.textContent = zone === "UTC" && !localIsUtc ? `Show ${localZone}` : "Show UTC";
    toggle.onclick = () => {
      if (localIsUtc) {
        hint.setAttribute("role", "status");
        hint.textContent = "Your browser's time zone is already UTC: dates and times are UTC.";
        return;
      }
      const inputs = [...document.querySelectorAll("input[data-zoned]")];
      const moments = inputs.map((input) => (input.value ? momentOf(input.value, zone) : null));
      try {
        window.localStorage.setItem(ZONE_KEY, zone === "UTC" ? "local" : "utc");
      } catch (error) {
        return;
      }
      const next = chosenZone();
      inputs.forEach((input, index) => {
        if (moments[index]) input.value = wallClock(moments[index], next);
      });
      showTimes();
    };
  }
  if (/^[A-Za-z0-9_+\-/]{1,64}$/.test(zone)) {
    const secure = window.location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${ZONE_COOKIE}=${zone}; path=/; max-age=31536000; SameSite=Lax${secure}`;
  }
  zoneTheChart(zone);
  zoneTheFilters(zone);
}

// The activity chart counts by the days (or hours) of the zone it names (data-zone); in
// another zone, the same chart is asked for again, counted in the viewer's.
let chartAsked = "";
function zoneTheChart(zone) {
  const chart = document.getElementById("activity");
  if (!chart || !chart.dataset.refresh || chart.dataset.zone === zone || chartAsked === zone) return;
  chartAsked = zone;
  const url = new URL(chart.dataset.refresh, window.location.href);
  url.searchParams.set("tz", zone);
  fetch(url, { credentials: "same-origin" })
    .then((answer) => (answer.ok ? answer.text() : ""))
    .then((html) => {
      const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("activity");
      const current = document.getElementById("activity");
      if (fresh && current && fresh.dataset.zone === chosenZone()) {
        current.replaceWith(fresh);
        showTimes();
      }
    })
    .catch(() => {});  // the chart stays as it was, and says its zone
}

function zoneTheFilters(zone) {
  document.querySelectorAll("input[data-zoned]").forEach((input) => {
    const given = input.dataset.given;  // the moment in the URL, as the server echoed it
    if (given && !input.dataset.shown) {
      const moment = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(given) ? given : `${given}Z`);
      if (!Number.isNaN(moment.getTime())) input.value = wallClock(moment, zone);
      input.dataset.shown = "1";
    }
    const form = input.form;
    if (form && !form.dataset.zoned) {
      form.dataset.zoned = "1";
      form.addEventListener("submit", () => {
        const current = chosenZone();
        form.querySelectorAll("input[data-zoned]").forEach((field) => {
          if (!field.value) return;
          const moment = momentOf(field.value, current);
          if (Number.isNaN(moment.getTime())) return;  // the server names what is wrong
          const hidden = document.createElement("input");
          hidden.type = "hidden";
          hidden.name = field.name;
          hidden.value = moment.toISOString();
          field.removeAttribute("name");
          form.appendChild(hidden);
        });
      });
    }
  });
}

// Destructive forms ask first (data-confirm holds the question and what will happen). The
// dialog posts the same form with confirm=yes, as the confirmation page without JavaScript
// does; cancelling posts nothing.
function askFirst() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.confirmed === "yes") return;
      event.preventDefault();
      const dialog = confirmDialog();
      dialog.querySelector(".confirm-text").textContent = form.dataset.confirm;
      const submit = form.querySelector("button[type=submit]");
      dialog.querySelector(".confirm-ok").textContent = submit ? submit.textContent : "Confirm";
      dialog.returnValue = "";
      dialog.onclose = () => {
        if (dialog.returnValue !== "yes") return;
        const field = document.createElement("input");
        field.type = "hidden";
        field.name = "confirm";
        field.value = "yes";
        form.appendChild(field);
        form.dataset.confirmed = "yes";
        form.submit();
      };
      dialog.showModal();
    });
  });
}

function confirmDialog() {
  let dialog = document.getElementById("confirm-dialog");
  if (dialog) return dialog;
  dialog = document.createElement("dialog");
  dialog.id = "confirm-dialog";
  dialog.className = "card";
  dialog.setAttribute("aria-labelledby", "confirm-dialog-text");
  const form = document.createElement("form");
  form.method = "dialog";
  const text = document.createElement("p");
  text.className = "confirm-text";
  text.id = "confirm-dialog-text";
  const ok = document.createElement("button");
  ok.value = "yes";
  ok.className = "button danger confirm-ok";
  const cancel = document.createElement("button");
  cancel.value = "cancel";
  cancel.className = "button secondary";
  cancel.textContent = "Cancel";
  cancel.autofocus = true;
  form.append(text, ok, " ", cancel);
  dialog.append(form);
  document.body.append(dialog);
  return dialog;
}
