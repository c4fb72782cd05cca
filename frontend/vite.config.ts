/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// Django serves the build from STATIC_URL; the template finds the hashed file names through
// the manifest, so the entry is the script itself rather than index.html.
export default defineConfig({
  base: "/static/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    sourcemap: true,
    target: "es2022",
    rollupOptions: { input: "src/main.ts" },
  },
  server: {
    // `npx vite` + `manage.py runserver` on :8000 for working on the page with live reload.
    proxy: { "/api": "http://127.0.0.1:8000", "/accounts": "http://127.0.0.1:8000" },
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
  },
});
