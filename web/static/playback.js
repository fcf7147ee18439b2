// The playback page: a chapter click seeks the programme there (the server answers the Range
// request) and plays; the chapter being played is marked as the video goes.
"use strict";

(() => {
  const video = document.getElementById("programme");
  const list = document.getElementById("chapter-list");
  if (!video || !list) return;
  const buttons = [...list.querySelectorAll("button.chapter")];

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.chapter");
    if (!button) return;
    video.currentTime = Number(button.dataset.start);
    // play() is refused without a user gesture on some browsers: the click is one, but keep
    // the seek even if playing is refused.
    const playing = video.play();
    if (playing && playing.catch) playing.catch(() => {});
  });

  function markCurrent() {
    const now = video.currentTime;
    let current = null;
    for (const button of buttons) if (Number(button.dataset.start) <= now + 0.05) current = button;
    for (const button of buttons) {
      if (button === current) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }
  video.addEventListener("timeupdate", markCurrent);
  video.addEventListener("seeked", markCurrent);
  markCurrent();
})();
