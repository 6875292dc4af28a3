// TeamFlow reference frontend: shows the API's release and the latest notes.
(function () {
  "use strict";
  function text(id, value) { document.getElementById(id).textContent = value; }
  fetch("/api/v1/version").then(function (r) { return r.json(); })
    .then(function (v) { text("api-version", v.version); })
    .catch(function () { text("api-version", "unreachable"); });
  fetch("/api/v1/notes?limit=10").then(function (r) { return r.json(); }).then(function (notes) {
    var list = document.getElementById("notes");
    notes.forEach(function (n) {
      var item = document.createElement("li");
      item.textContent = n.title;
      list.appendChild(item);
    });
  }).catch(function () { /* the page still renders */ });
}());
