// The New stream form (Organization -> Audit Streams) shows only the fields of the chosen
// destination type: the others are hidden and disabled (not sent), the shown ones that a
// type needs are required. Without this file every field shows, each label saying which
// type it is for, and the server names what is missing.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-destination-form]").forEach((form) => {
    const kind = form.querySelector("select[name=type]");
    if (!kind) return;
    const show = () => {
      form.querySelectorAll("[data-destination]").forEach((node) => {
        const applies = node.dataset.destination.split(" ").includes(kind.value);
        if (node.tagName === "OPTION") {
          node.hidden = !applies;
          node.disabled = !applies;
          if (!applies && node.selected) node.parentElement.selectedIndex = 0;
          return;
        }
        node.hidden = !applies;
        node.querySelectorAll("input, select").forEach((input) => {
          input.disabled = !applies;
          if ("required" in input.dataset) input.required = applies;
        });
      });
    };
    kind.addEventListener("change", show);
    show();
  });
});
