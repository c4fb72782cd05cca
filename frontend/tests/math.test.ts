import { describe, expect, it } from "vitest";
import { escapeHtml, MAX_SIZE_EM, renderMathText, splitMath } from "../src/math";

describe("splitMath", () => {
  it("keeps plain text as one segment", () => {
    expect(splitMath("Add the numbers.")).toEqual([{ kind: "text", text: "Add the numbers." }]);
  });

  it("finds inline $…$ math between text", () => {
    expect(splitMath("So $x = 2$ works.")).toEqual([
      { kind: "text", text: "So " },
      { kind: "math", tex: "x = 2", display: false },
      { kind: "text", text: " works." },
    ]);
  });

  it("treats $$…$$ and \\[…\\] as display math and \\(…\\) as inline", () => {
    expect(splitMath("$$a^2$$ and \\[b\\] and \\(c\\)")).toEqual([
      { kind: "math", tex: "a^2", display: true },
      { kind: "text", text: " and " },
      { kind: "math", tex: "b", display: true },
      { kind: "text", text: " and " },
      { kind: "math", tex: "c", display: false },
    ]);
  });

  it("does not close $…$ at an escaped dollar inside the math", () => {
    expect(splitMath("$\\$5 + x$ end")).toEqual([
      { kind: "math", tex: "\\$5 + x", display: false },
      { kind: "text", text: " end" },
    ]);
  });

  it("reads an escaped dollar in prose as a literal dollar", () => {
    expect(splitMath("It costs \\$5 and \\$7.")).toEqual([{ kind: "text", text: "It costs $5 and $7." }]);
  });

  it("leaves an unmatched dollar as text", () => {
    expect(splitMath("pay $5 now")).toEqual([{ kind: "text", text: "pay $5 now" }]);
  });

  it("keeps newlines inside display math", () => {
    const segs = splitMath("Then\n$$\nx+1\n$$\ndone");
    expect(segs[1]).toEqual({ kind: "math", tex: "\nx+1\n", display: true });
  });

  it("pulls [asy] blocks out as code, without rendering math inside them", () => {
    const segs = splitMath("Look: [asy]draw((0,0)--(1,$1$));[/asy] so $x$.");
    expect(segs).toEqual([
      { kind: "text", text: "Look: " },
      { kind: "asy", code: "draw((0,0)--(1,$1$));" },
      { kind: "text", text: " so " },
      { kind: "math", tex: "x", display: false },
      { kind: "text", text: "." },
    ]);
  });

  it("leaves an unterminated [asy] as text", () => {
    expect(splitMath("[asy]draw")).toEqual([{ kind: "text", text: "[asy]draw" }]);
  });

  it("renders bare align environments as display math", () => {
    const src = "We get \\begin{align*} x &= 1 \\\\ y &= 2 \\end{align*} so.";
    expect(splitMath(src)[1]).toEqual({
      kind: "math",
      tex: "\\begin{align*} x &= 1 \\\\ y &= 2 \\end{align*}",
      display: true,
    });
  });

  it("handles the PRM800K answer step", () => {
    expect(splitMath("# Answer\n\n$\\frac{14}{3}$")).toEqual([
      { kind: "text", text: "# Answer\n\n" },
      { kind: "math", tex: "\\frac{14}{3}", display: false },
    ]);
  });
});

describe("renderMathText", () => {
  it("escapes HTML in the text so problem text cannot inject markup", () => {
    const html = renderMathText('<img src=x onerror="alert(1)"> & <script>x</script>');
    expect(html).not.toContain("<img");
    expect(html).not.toContain("<script");
    expect(html).toContain("&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;script&gt;");
  });

  it("escapes HTML inside math and asy too", () => {
    expect(renderMathText("$a<b$")).not.toMatch(/<b[\s>]/);
    expect(renderMathText("[asy]label(\"<b>\");[/asy]")).toContain("&lt;b&gt;");
  });

  it("renders math with KaTeX, display math in display mode", () => {
    expect(renderMathText("$x^2$")).toContain('class="katex"');
    expect(renderMathText("\\[x^2\\]")).toContain("katex-display");
  });

  it("shows broken LaTeX as escaped source instead of throwing", () => {
    const html = renderMathText("$\\frac{1}{$ and $\\notacommand<x>$");
    expect(html).toContain("math-error");
    expect(html).toContain("\\notacommand&lt;x&gt;");
  });

  it("does not let \\href in math create a link", () => {
    const html = renderMathText("$\\href{javascript:alert(1)}{x}$");
    // The source may appear as annotation text, never as a link target.
    expect(html).not.toContain("href=");
    expect(html).not.toContain("<a ");
  });

  it("caps every size a \\rule or \\kern asks for, so a huge rule stays small", () => {
    const html = renderMathText("$\\rule{100000em}{100000em}$ and $\\kern{5000em}x$");
    expect(html).not.toContain("math-error"); // rendered (capped), not refused
    // Sizes KaTeX writes into the page: style attributes (HTML) and width/height/depth (MathML).
    // The TeX source itself stays readable in the MathML annotation.
    const written = [...html.matchAll(/(?:style|width|height|depth)="([^"]*)"/g)].map((m) => m[1]);
    const sizes = written.flatMap((v) => [...v.matchAll(/(-?\d+(?:\.\d+)?)em/g)].map((m) => Math.abs(Number(m[1]))));
    expect(sizes).toContain(MAX_SIZE_EM);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_SIZE_EM);
  });

  it("stops a self-expanding macro with an error shown as source", () => {
    const html = renderMathText("$\\def\\a{\\a\\a}\\a$");
    expect(html).toContain("math-error");
    expect(html).toContain("\\def\\a");
  });

  it("escapeHtml covers quotes", () => {
    expect(escapeHtml(`"'&<>`)).toBe("&quot;&#39;&amp;&lt;&gt;");
  });
});
