// THON's idle banner, added by the front door to the IDE's page: it warns
// five minutes before the sandbox goes to sleep (or its time ends), and
// "I'm still here" keeps it awake. Asking how long it has been idle is
// not activity; the button is.
(() => {
	"use strict";
	const base = new URL(document.currentScript.src).pathname.replace(/\/_thon\/idle\.js$/, "");
	const url = base + "/_thon/idle";
	const warnAt = 5 * 60; // seconds before sleep or the end
	let bar = null, timer = 0;

	function banner(text, button, action) {
		if (!bar) {
			bar = document.createElement("div");
			bar.id = "thon-idle-banner";
			bar.setAttribute("role", "alert");
			bar.style.cssText = "position:fixed;left:50%;bottom:2.5rem;transform:translateX(-50%);z-index:2147483647;" +
				"max-width:40rem;padding:.75rem 1rem;border-radius:.5rem;background:#1d2330;color:#fff;" +
				"font:14px/1.4 system-ui,sans-serif;box-shadow:0 4px 16px rgba(0,0,0,.35);display:flex;gap:1rem;align-items:center";
			bar.append(document.createElement("span"), document.createElement("button"));
			bar.lastChild.style.cssText = "font:inherit;padding:.35rem .75rem;border-radius:.35rem;border:0;background:#2f6bff;color:#fff;cursor:pointer";
			document.body.append(bar);
		}
		bar.firstChild.textContent = text;
		bar.lastChild.textContent = button;
		bar.lastChild.onclick = action;
		bar.lastChild.hidden = !button;
	}
	function hide() { if (bar) { bar.remove(); bar = null; } }
	function minutes(s) { const m = Math.max(1, Math.ceil(s / 60)); return m === 1 ? "a minute" : m + " minutes"; }

	async function check(method) {
		clearTimeout(timer);
		let next = 60;
		try {
			const res = await fetch(url, { method, credentials: "same-origin", cache: "no-store" });
			if (res.ok) next = show(await res.json());
		} catch (e) { /* the front door is restarting: ask again later */ }
		timer = setTimeout(() => check("GET"), next * 1000);
	}
	function show(s) {
		if (s.state === "asleep" || s.state === "expired" || s.state === "stopped") {
			banner(s.state === "expired" ? "Your IDE's time ended; your work is safe. An organizer can give it more time."
				: "Your IDE went to sleep; your work is safe.", "Wake it", () => location.reload());
			return 30;
		}
		const sleepIn = s.sleep_in_seconds, endsIn = s.ends_in_seconds;
		if (endsIn != null && endsIn <= warnAt && (sleepIn == null || endsIn <= sleepIn)) {
			banner("Your IDE's time ends in " + minutes(endsIn) + ". Save your work; an organizer can give it more time.", "", null);
			return Math.min(30, Math.max(5, endsIn));
		}
		if (sleepIn != null && sleepIn <= warnAt) {
			banner("Your IDE goes to sleep in " + minutes(sleepIn) + " because nobody used it. Your work is kept.",
				"I'm still here", () => { hide(); check("POST"); });
			return Math.min(15, Math.max(5, sleepIn));
		}
		hide();
		// Ask again shortly before a warning could be due.
		const due = Math.min(sleepIn ?? Infinity, endsIn ?? Infinity) - warnAt;
		return Math.min(120, Math.max(10, due));
	}
	// Coming back to the tab: ask at once.
	document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") check("GET"); });
	check("GET");
})();
