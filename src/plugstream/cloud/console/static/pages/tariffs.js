// the tariffs page: to be written
import { h } from "../console.js";

document.getElementById("page").append(h("p", { class: "note", text: "Coming soon." }));
