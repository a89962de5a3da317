// The console is served by the gateway under /ui/ (godel_deploy/gateway.py routes every file of
// dist/ there), so its asset URLs are built with that base.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
});
