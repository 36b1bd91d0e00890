// Verifies Faregate event proofs with OpenZeppelin's own library, the
// "standard tool" operators reconcile with:
//
//   faregate ledger prove --event ID --data DIR --json | node ledger/contracts/verify-proof.js
//
// Input on stdin: one JSON object {root, value, proof} (what `faregate ledger
// prove --json` prints; other fields are ignored), a JSON array of them, or
// several such objects one after another. value is the leaf value (sha256 of
// the event's signed bytes) and is checked with
// StandardMerkleTree.verify(root, ['bytes32'], [value], proof).
//
// Output: one line per proof, "ok <value>" or "FAIL <value>", then a summary.
// Exit status 0 only if there was at least one proof and every one verified;
// 1 if any failed; 2 for unreadable input or a missing @openzeppelin/merkle-tree
// (`npm ci --prefix ledger/contracts`, which `make test` runs, installs it).
'use strict';

let StandardMerkleTree;
try {
  ({ StandardMerkleTree } = require('@openzeppelin/merkle-tree'));
} catch (e) {
  console.error(`verify-proof: cannot load @openzeppelin/merkle-tree (${e.code || e.message}); run: npm ci --prefix ledger/contracts (make test does)`);
  process.exit(2);
}

// parseAll reads a JSON value, or several concatenated JSON objects.
function parseAll(text) {
  const trimmed = text.trim();
  if (trimmed === '') throw new Error('no input');
  try {
    const v = JSON.parse(trimmed);
    return Array.isArray(v) ? v : [v];
  } catch (_) {
    // Concatenated objects: split at top-level brace depth 0.
    const out = [];
    let depth = 0, start = -1, inStr = false, esc = false;
    for (let i = 0; i < trimmed.length; i++) {
      const c = trimmed[i];
      if (inStr) {
        if (esc) esc = false;
        else if (c === '\\') esc = true;
        else if (c === '"') inStr = false;
        continue;
      }
      if (c === '"') inStr = true;
      else if (c === '{') { if (depth++ === 0) start = i; }
      else if (c === '}') {
        if (--depth === 0) out.push(JSON.parse(trimmed.slice(start, i + 1)));
        if (depth < 0) throw new Error(`unbalanced '}' at offset ${i}`);
      } else if (depth === 0 && !/\s/.test(c)) {
        throw new Error(`unexpected ${JSON.stringify(c)} at offset ${i}`);
      }
    }
    if (depth !== 0) throw new Error('truncated JSON object');
    return out;
  }
}

const bytes32 = /^0x[0-9a-fA-F]{64}$/;

function check(p, i) {
  if (p === null || typeof p !== 'object') throw new Error(`proof ${i}: not an object`);
  const { root, value, proof } = p;
  if (!bytes32.test(root || '')) throw new Error(`proof ${i}: root ${JSON.stringify(root)} is not a 0x-prefixed bytes32`);
  if (!bytes32.test(value || '')) throw new Error(`proof ${i}: value ${JSON.stringify(value)} is not a 0x-prefixed bytes32`);
  if (!Array.isArray(proof) || !proof.every((h) => bytes32.test(h))) throw new Error(`proof ${i}: proof must be a list of 0x-prefixed bytes32`);
  return StandardMerkleTree.verify(root, ['bytes32'], [value], proof);
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  let proofs;
  try {
    proofs = parseAll(input);
  } catch (e) {
    console.error(`verify-proof: reading stdin: ${e.message}`);
    process.exit(2);
  }
  let ok = 0, failed = 0;
  for (let i = 0; i < proofs.length; i++) {
    let good;
    try {
      good = check(proofs[i], i);
    } catch (e) {
      console.error(`verify-proof: ${e.message}`);
      process.exit(2);
    }
    console.log(`${good ? 'ok' : 'FAIL'} ${proofs[i].value}`);
    if (good) ok++; else failed++;
  }
  const pkg = require('@openzeppelin/merkle-tree/package.json');
  console.log(`${ok} verified, ${failed} failed (@openzeppelin/merkle-tree ${pkg.version} StandardMerkleTree.verify)`);
  process.exit(failed === 0 && ok > 0 ? 0 : 1);
});
