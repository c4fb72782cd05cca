// The README's key table is the page's help (KEY_HELP, which the help dialog renders), row for
// row: a key added to the page and not to the README fails here.
import { describe, expect, it } from "vitest";
import readme from "../../README.md?raw";
import { commandForKey, KEY_HELP } from "../src/keys";

const HEADING = "### Keys on the label page";

/** The rows of the first table after the heading, as [key, what] with backticks dropped. */
export function readmeKeyTable(text: string): [string, string][] {
  const start = text.indexOf(HEADING);
  if (start < 0) {
    throw new Error(`README has no "${HEADING}" section`);
  }
  const lines = text.slice(start).split("\n");
  const first = lines.findIndex((line) => line.startsWith("|"));
  const rows: [string, string][] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith("|")) {
      break;
    }
    const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
    rows.push([cells[0]!.replaceAll("`", ""), cells[1]!]);
  }
  return rows;
}

const normal = (key: string) => key.replace(/\s+/g, " ").trim();

describe("the README's key table", () => {
  it("lists every key of the page's help, in order, with the same words", () => {
    const table = readmeKeyTable(readme);
    expect(table.map(([k, what]) => [normal(k), what])).toEqual(KEY_HELP.map(([k, what]) => [normal(k), what]));
  });

  it("names only keys the page acts on", () => {
    const press = (key: string) => commandForKey({ key, ctrlKey: false, metaKey: false, altKey: false });
    for (const [keys] of readmeKeyTable(readme)) {
      for (const key of keys.split(" or ")) {
        const typed = key === "−" ? "-" : key.length === 1 ? key.toLowerCase() : key;
        expect(press(typed), `README key ${key}`).not.toBeNull();
      }
    }
  });
});
