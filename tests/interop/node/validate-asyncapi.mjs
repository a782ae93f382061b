// Validates AsyncAPI documents with the official parser; prints errors, exits 1 on any.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (!document || errors.length) {
    failed = true;
    for (const e of errors) console.log(`${file}: ${e.message} at ${JSON.stringify(e.path)}`);
  } else {
    console.log(`${file}: valid (${document.channels().length} channels)`);
  }
}
process.exit(failed ? 1 : 0);
