// Entry point loaded by labeling/templates/labeling/label.html through the Vite manifest.
import "katex/dist/katex.min.css";
import "./styles.css";
import { App } from "./app";
import { MemoryStore, type KeyValueStore } from "./storage";

function browserStorage(): KeyValueStore {
  try {
    const probe = "stepwise:probe";
    window.localStorage.setItem(probe, "1");
    window.localStorage.removeItem(probe);
    return window.localStorage;
  } catch {
    // Private mode or storage disabled: work still flows, it just won't survive a reload.
    return new MemoryStore();
  }
}

const root = document.getElementById("app");
if (root) {
  const app = new App({
    root,
    username: root.dataset.username ?? "anonymous",
    csrfToken: root.dataset.csrfToken ?? "",
    storage: browserStorage(),
  });
  void app.start();
}
