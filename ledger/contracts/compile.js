// Compiles Settlement.sol with the solc pinned in package.json (see
// package-lock.json) through solc's standard-JSON API, because the solcjs
// command line cannot set the EVM version. evmVersion is pinned to london so the
// bytecode has no PUSH0 and also runs on London-era chains (Clique, older QBFT).
// Writes build/Settlement.abi and build/Settlement.bin for abigen.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const EVM_VERSION = 'london';
const here = __dirname;
const source = fs.readFileSync(path.join(here, 'Settlement.sol'), 'utf8');

const input = {
  language: 'Solidity',
  sources: { 'Settlement.sol': { content: source } },
  settings: {
    evmVersion: EVM_VERSION,
    optimizer: { enabled: true, runs: 200 },
    // No metadata hash: the bytecode then depends only on the source and these
    // settings, so rebuilding reproduces the committed .bin byte for byte.
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const e of output.errors || []) {
  console.error(e.formattedMessage || e.message);
  if (e.severity === 'error') failed = true;
}
if (failed) process.exit(1);

const contract = output.contracts['Settlement.sol'].Settlement;
const bin = contract.evm.bytecode.object;
const outDir = path.join(here, 'build');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'Settlement.abi'), JSON.stringify(contract.abi, null, 2) + '\n');
// No trailing newline: abigen embeds the file verbatim as the deploy code.
fs.writeFileSync(path.join(outDir, 'Settlement.bin'), bin);
console.log(`solc ${solc.version()} evm=${EVM_VERSION}: Settlement ${bin.length / 2} bytes`);
