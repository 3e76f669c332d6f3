// `npm run vectors`: (re)writes test/vectors/ts.json from test/ts-vectors.ts.
import { writeFileSync } from "node:fs";
import { tsVectors } from "../test/ts-vectors.js";

const out = new URL("../../test/vectors/ts.json", import.meta.url);
const vectors = tsVectors();
writeFileSync(out, JSON.stringify(vectors, null, 1) + "\n");
console.log(`wrote ${vectors.length} vectors to test/vectors/ts.json`);
