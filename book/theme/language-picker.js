// The language picker: a globe button in the menu bar that opens the same page in another
// language. The English book is at the site's root and each translation in a folder named
// after its language (book/book/zh-CN/), as scripts/test-all and the README build them.
// Add a language here and in book/po/ (LANG.po), nowhere else.
(function () {
  "use strict";
  const languages = [
    ["en", "English"],
    ["zh-CN", "简体中文 (Simplified Chinese)"],
  ];
  const buttons = document.querySelector("#menu-bar .right-buttons");
  if (!buttons || typeof path_to_root === "undefined") {
    return;
  }
  const current = document.documentElement.lang || "en";

  // This page's path inside its language's book: the last segments of the URL, as many as
  // path_to_root climbs, plus the file itself.
  const depth = (path_to_root.match(/\.\.\//g) || []).length;
  let segments = window.location.pathname.split("/");
  if (segments[segments.length - 1] === "") {
    segments[segments.length - 1] = "index.html";
  }
  const page = segments.slice(-(depth + 1)).join("/");
  const englishRoot = path_to_root + (current === "en" ? "" : "../");

  const toggle = document.createElement("button");
  toggle.id = "language-toggle";
  toggle.className = "icon-button";
  toggle.type = "button";
  toggle.title = "Change language / 切换语言";
  toggle.setAttribute("aria-label", "Change language");
  toggle.setAttribute("aria-haspopup", "true");
  toggle.setAttribute("aria-expanded", "false");
  toggle.setAttribute("aria-controls", "language-list");
  toggle.innerHTML = '<i class="fa fa-globe"></i>';

  const list = document.createElement("ul");
  list.id = "language-list";
  list.className = "theme-popup";
  list.setAttribute("aria-label", "Languages");
  list.setAttribute("role", "menu");
  for (const [code, name] of languages) {
    const item = document.createElement("li");
    item.setAttribute("role", "none");
    const link = document.createElement("a");
    link.setAttribute("role", "menuitem");
    link.className = "theme";
    link.lang = code;
    link.textContent = name;
    link.href = englishRoot + (code === "en" ? "" : code + "/") + page;
    if (code === current) {
      link.classList.add("theme-selected");
      link.setAttribute("aria-current", "true");
    }
    item.appendChild(link);
    list.appendChild(item);
  }

  function show(open) {
    list.style.display = open ? "block" : "none";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  }
  toggle.addEventListener("click", function (event) {
    event.stopPropagation();
    show(list.style.display !== "block");
  });
  document.addEventListener("click", function (event) {
    if (!list.contains(event.target)) {
      show(false);
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      show(false);
    }
  });

  buttons.insertBefore(toggle, buttons.firstChild);
  buttons.insertBefore(list, toggle.nextSibling);
})();
