// Dumps @openzeppelin/merkle-tree's output for fixed value sets into
// ../merkle/testdata/openzeppelin.json, which ledger/merkle's tests compare
// against byte for byte. The JSON is committed so `go test` never needs npm.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');

// Deterministic pseudo-random bytes32 values: sha256("faregate/<set>/<i>").
function value(set, i) {
  return '0x' + crypto.createHash('sha256').update(`faregate/${set}/${i}`).digest('hex');
}

const cases = [];
function addCase(name, values) {
  const tree = StandardMerkleTree.of(values.map((v) => [v]), ['bytes32']);
  const dump = tree.dump();
  cases.push({
    name,
    values,
    root: tree.root,
    tree: dump.tree,
    // proofs[i] is the proof of values[i] (by index, which matters for duplicates)
    proofs: values.map((_, i) => tree.getProof(i)),
    // proofsByValue[i] is getProof([values[i]]), OpenZeppelin's lookup by value;
    // only differs from proofs[i] for duplicates, so only dumped for those.
    proofsByValue: new Set(values).size === values.length ? undefined : values.map((v) => tree.getProof([v])),
  });
}

for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 33, 64, 257]) {
  addCase(`n${n}`, Array.from({ length: n }, (_, i) => value(`n${n}`, i)));
}
// Edge values and duplicates.
addCase('edges', [
  '0x' + '00'.repeat(32),
  '0x' + 'ff'.repeat(32),
  '0x' + '00'.repeat(31) + '01',
  '0x' + '80' + '00'.repeat(31),
]);
const d = (i) => value('dup', i);
addCase('duplicates', [d(0), d(1), d(0), d(2), d(1), d(0)]);

const out = path.join(__dirname, '..', 'merkle', 'testdata', 'openzeppelin.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
const pkg = require('@openzeppelin/merkle-tree/package.json');
fs.writeFileSync(out, JSON.stringify({ generator: `@openzeppelin/merkle-tree ${pkg.version}`, cases }, null, 1) + '\n');
console.log(`wrote ${cases.length} cases to ${path.relative(process.cwd(), out)}`);
