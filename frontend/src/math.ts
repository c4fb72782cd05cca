// Splits MATH/PRM800K text into plain text, LaTeX and [asy] segments, and renders it to safe
// HTML: text is escaped, math goes through KaTeX (which escapes its own input), asy is code.
import katex from "katex";

export type Segment =
  | { kind: "text"; text: string }
  | { kind: "math"; tex: string; display: boolean }
  | { kind: "asy"; code: string };

// Environments that MATH problems sometimes write without any surrounding `$`.
const BARE_ENVIRONMENTS = ["align*", "align", "equation*", "equation", "gather*", "gather", "eqnarray*", "eqnarray"];

interface Delimiter {
  open: string;
  close: string;
  display: boolean;
}

// Longest openers first so `$$` wins over `$`.
const DELIMITERS: Delimiter[] = [
  { open: "$$", close: "$$", display: true },
  { open: "\\[", close: "\\]", display: true },
  { open: "\\(", close: "\\)", display: false },
  { open: "$", close: "$", display: false },
];

/** Index of `close` at or after `from`, skipping backslash escapes (so `\$` never closes `$`). */
function findClose(src: string, close: string, from: number): number {
  let i = from;
  while (i < src.length) {
    if (src.startsWith(close, i)) {
      return i;
    }
    // `\]` and `\)` are closers themselves, so only skip an escape that is not the closer.
    i += src[i] === "\\" ? 2 : 1;
  }
  return -1;
}

export function splitMath(src: string): Segment[] {
  const out: Segment[] = [];
  let text = "";
  const flushText = () => {
    if (text) {
      out.push({ kind: "text", text });
      text = "";
    }
  };

  let i = 0;
  outer: while (i < src.length) {
    if (src.startsWith("[asy]", i)) {
      const end = src.indexOf("[/asy]", i + 5);
      if (end !== -1) {
        flushText();
        out.push({ kind: "asy", code: src.slice(i + 5, end).replace(/^\n+|\s+$/g, "") });
        i = end + 6;
        continue;
      }
    }
    if (src.startsWith("\\$", i)) {
      text += "$"; // an escaped dollar in prose is a literal dollar sign
      i += 2;
      continue;
    }
    if (src.startsWith("\\begin{", i)) {
      for (const env of BARE_ENVIRONMENTS) {
        const open = `\\begin{${env}}`;
        const close = `\\end{${env}}`;
        if (src.startsWith(open, i)) {
          const end = src.indexOf(close, i + open.length);
          if (end !== -1) {
            flushText();
            out.push({ kind: "math", tex: src.slice(i, end + close.length), display: true });
            i = end + close.length;
            continue outer;
          }
        }
      }
    }
    for (const d of DELIMITERS) {
      if (!src.startsWith(d.open, i)) {
        continue;
      }
      const start = i + d.open.length;
      const end = findClose(src, d.close, start);
      const tex = end === -1 ? "" : src.slice(start, end);
      // An unmatched or empty delimiter is prose ("costs $5"); `$$` falls through to `$`.
      if (end !== -1 && tex.trim() !== "") {
        flushText();
        out.push({ kind: "math", tex, display: d.display });
        i = end + d.close.length;
        continue outer;
      }
      if (d.open === "$$" && end !== -1) {
        // "$$" with nothing between: two literal dollars.
        text += "$$";
        i = end + 2;
        continue outer;
      }
    }
    text += src[i];
    i += 1;
  }
  flushText();
  return out;
}

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

// Imported text decides what KaTeX draws, so it gets limits: every size it writes (\rule,
// \kern, \hspace, …) is capped at MAX_SIZE_EM, and macro expansion stops after MAX_EXPAND
// steps, so neither `\rule{100000em}{100000em}` nor a self-expanding \def can take the page.
export const MAX_SIZE_EM = 10;
export const MAX_EXPAND = 1000;

function renderTex(tex: string, display: boolean): string {
  try {
    return katex.renderToString(tex, {
      displayMode: display,
      throwOnError: true,
      // \href, \url, \includegraphics off: problem text must not be able to link or load.
      trust: false,
      strict: "ignore",
      output: "htmlAndMathml",
      maxSize: MAX_SIZE_EM,
      maxExpand: MAX_EXPAND,
    });
  } catch {
    // Show the source rather than a red KaTeX error: the annotator can still read it.
    const cls = display ? "math-error math-display" : "math-error";
    return `<code class="${cls}" title="Could not render this LaTeX">${escapeHtml(tex)}</code>`;
  }
}

/** Safe HTML for a problem or step: never passes raw input through as markup. */
export function renderMathText(src: string): string {
  return splitMath(src)
    .map((seg) => {
      switch (seg.kind) {
        case "text":
          return escapeHtml(seg.text);
        case "math":
          return renderTex(seg.tex, seg.display);
        case "asy":
          return `<pre class="asy" aria-label="Asymptote drawing source"><code>${escapeHtml(seg.code)}</code></pre>`;
      }
    })
    .join("");
}
