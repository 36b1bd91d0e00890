// Verifies Faregate event proofs with OpenZeppelin's own library, the
// "standard tool" operators reconcile with, and nothing of Faregate's:
//
//   faregate ledger prove --event ID --data DIR --json | node ledger/contracts/verify-proof.js --rpc URL --contract 0x...
//
// Input on stdin: one JSON object, a JSON array of them, or several objects
// one after another. Each is either what `faregate ledger prove --json`
// prints ({root, value, proof, event: {signed}, batch: {id}, contract}) or
// what the settlement API's GET /v1/events/{id} answers ({leaf, signed,
// proof: {batch_id, root, path}}); other fields are ignored.
//
// Each proof is checked three ways:
//   1. value (the leaf value) is sha256 of the event's signed bytes, when
//      they are given (an auditor's view; the bytes hold the raw card token);
//   2. StandardMerkleTree.verify(root, ['bytes32'], [value], proof);
//   3. with --rpc URL --contract 0x..., the root is the one anchored on
//      chain: the contract's verify(batchId, value, proof) view, asked over
//      JSON-RPC (eth_call) at the --contract address.
// --rpc needs --contract: the contract is the verifier's own choice (the
// settlement contract it knows), never the input's, since whoever hands over
// a proof could name a contract that answers yes to anything. An input that
// names a different contract is refused.
// Without --rpc the root is only the one the input carries, which anyone can
// make up: a summary line says so.
//
// Output: one line per proof, "ok <value>" or "FAIL <value>: why", then a
// summary naming the contract asked. Exit status 0 only if there was at
// least one proof and every one verified; 1 if any failed; 2 for unreadable
// input, a bad flag (--rpc without --contract), an input naming another
// contract, a chain that does not answer, or a missing @openzeppelin/merkle-tree
// (`npm ci --prefix ledger/contracts`, which `make test` runs, installs it).
'use strict';

const crypto = require('crypto');

let StandardMerkleTree, abiEncode, keccak256;
try {
  ({ StandardMerkleTree } = require('@openzeppelin/merkle-tree'));
  ({ encode: abiEncode } = require('@metamask/abi-utils'));
  ({ keccak256 } = require('ethereum-cryptography/keccak'));
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
const address = /^0x[0-9a-fA-F]{40}$/;

function usage(msg) {
  console.error(`verify-proof: ${msg}\nusage: node verify-proof.js [--rpc URL --contract 0x...] < proofs.json
  --rpc URL        the chain's JSON-RPC; asks the contract whether each root is the one anchored
  --contract 0x..  the settlement contract to ask (required with --rpc; an input naming another is refused)`);
  process.exit(2);
}

// Flags.
let rpc = '', contractFlag = '';
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
  const val = () => (inline !== undefined ? inline : process.argv[++i]);
  if (name === '--rpc') rpc = val() || '';
  else if (name === '--contract') contractFlag = val() || '';
  else usage(`unknown argument ${JSON.stringify(a)}`);
}
if (rpc !== '') {
  try {
    const u = new URL(rpc);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http or https');
  } catch (e) {
    usage(`--rpc ${JSON.stringify(rpc)}: want an http(s) JSON-RPC URL (${e.message})`);
  }
}
if (contractFlag !== '' && !address.test(contractFlag)) usage(`--contract ${JSON.stringify(contractFlag)}: want 0x and 40 hex digits`);
// The contract that confirms a root must be the verifier's choice: an input
// could name one that answers 1 to every call.
if (rpc !== '' && contractFlag === '') usage('--rpc needs --contract 0x... (the settlement contract you know): the contract an input names is not trusted');

// normalise reads one input object into {root, value, proof, signed, batchId, contract}.
function normalise(p, i) {
  if (p === null || typeof p !== 'object') throw new Error(`proof ${i}: not an object`);
  let root, value, proof, signed, batchId, contract;
  if (p.proof !== null && typeof p.proof === 'object' && !Array.isArray(p.proof)) {
    // The settlement API's event.
    if (p.proof.root === undefined) throw new Error(`proof ${i}: no proof yet (${p.proof.pending || 'pending'})`);
    ({ root } = p.proof);
    value = p.leaf;
    proof = p.proof.path === null ? [] : p.proof.path;
    signed = p.signed;
    batchId = p.proof.batch_id;
  } else {
    ({ root, value, proof, contract } = p);
    signed = p.event && p.event.signed;
    batchId = p.batch && p.batch.id;
  }
  if (!bytes32.test(root || '')) throw new Error(`proof ${i}: root ${JSON.stringify(root)} is not a 0x-prefixed bytes32`);
  if (!bytes32.test(value || '')) throw new Error(`proof ${i}: value ${JSON.stringify(value)} is not a 0x-prefixed bytes32`);
  if (!Array.isArray(proof) || !proof.every((h) => bytes32.test(h))) throw new Error(`proof ${i}: proof must be a list of 0x-prefixed bytes32`);
  if (signed !== undefined && signed !== '' && !/^0x([0-9a-fA-F]{2})+$/.test(signed)) throw new Error(`proof ${i}: signed ${JSON.stringify(String(signed).slice(0, 20))}... is not 0x hex bytes`);
  if (contract !== undefined && contract !== '' && contractFlag !== '' && String(contract).toLowerCase() !== contractFlag.toLowerCase()) {
    throw new Error(`proof ${i}: names contract ${contract}, not the --contract ${contractFlag} asked; refusing (check which settlement contract the proof is for)`);
  }
  return { root, value, proof, signed, batchId, contract: contractFlag };
}

// onChain asks the contract's verify(uint64,bytes32,bytes32[]) view.
const verifySelector = Buffer.from(keccak256(Buffer.from('verify(uint64,bytes32,bytes32[])'))).subarray(0, 4);
let rpcId = 0;
async function onChain(c) {
  if (!Number.isSafeInteger(c.batchId) || c.batchId < 1) throw new Error(`no batch id in the input (${JSON.stringify(c.batchId)})`);
  const data = '0x' + verifySelector.toString('hex') + Buffer.from(abiEncode(['uint64', 'bytes32', 'bytes32[]'], [BigInt(c.batchId), c.value, c.proof])).toString('hex');
  const res = await fetch(rpc, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method: 'eth_call', params: [{ to: c.contract, data }, 'latest'] }),
  });
  if (!res.ok) throw new Error(`JSON-RPC ${rpc}: HTTP ${res.status}`);
  const out = await res.json();
  if (out.error) {
    // A revert (an unknown batch) is the chain's answer, not a failure to ask.
    if (typeof out.error.data === 'string' || /revert/i.test(out.error.message || '')) return { ok: false, why: `the contract refused: ${out.error.message}` };
    throw new Error(`JSON-RPC ${rpc}: ${out.error.message}`);
  }
  if (out.result === '0x') throw new Error(`no contract at ${c.contract} on ${rpc}`);
  const ok = BigInt(out.result) === 1n;
  return { ok, why: ok ? '' : `batch ${c.batchId}'s root on chain is not the one this proof reaches` };
}

// check returns "" when the proof holds, or why not.
async function check(c) {
  if (c.signed) {
    const digest = '0x' + crypto.createHash('sha256').update(Buffer.from(c.signed.slice(2), 'hex')).digest('hex');
    if (digest.toLowerCase() !== c.value.toLowerCase()) return `value is not sha256 of the signed bytes (${digest})`;
  }
  if (!StandardMerkleTree.verify(c.root, ['bytes32'], [c.value], c.proof)) return 'the proof does not reach the root';
  if (rpc !== '') {
    const r = await onChain(c);
    if (!r.ok) return r.why;
  }
  return '';
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  let proofs;
  try {
    proofs = parseAll(input).map(normalise);
  } catch (e) {
    console.error(`verify-proof: reading stdin: ${e.message}`);
    process.exit(2);
  }
  let ok = 0, failed = 0, unsigned = 0;
  for (const c of proofs) {
    let why;
    try {
      why = await check(c);
    } catch (e) {
      console.error(`verify-proof: ${e.message}`);
      process.exit(2);
    }
    if (!c.signed) unsigned++;
    const at = rpc ? ` (batch ${c.batchId} at ${contractFlag})` : '';
    console.log(why === '' ? `ok ${c.value}${at}` : `FAIL ${c.value}${at}: ${why}`);
    if (why === '') ok++; else failed++;
  }
  const pkg = require('@openzeppelin/merkle-tree/package.json');
  console.log(`${ok} verified, ${failed} failed (@openzeppelin/merkle-tree ${pkg.version} StandardMerkleTree.verify${rpc ? `; roots asked of the contract ${contractFlag} at ${rpc}` : ''})`);
  if (rpc === '') console.log('roots not checked against the chain: pass --rpc URL --contract 0x... to ask the contract');
  if (unsigned > 0) console.log(`${unsigned} without their signed bytes: value not tied to an event (an auditor's view carries them)`);
  process.exit(failed === 0 && ok > 0 ? 0 : 1);
});
