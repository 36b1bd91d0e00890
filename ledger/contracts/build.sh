#!/usr/bin/env bash
# Rebuilds the Settlement contract artifacts and Go bindings:
#   ledger/contracts/build/Settlement.{abi,bin}  (solc pinned in package-lock.json, evm london)
#   ledger/settlementabi/settlement.go          (abigen v2, same go-ethereum as go.mod)
# and refreshes the OpenZeppelin Merkle fixtures the Go tests compare against.
# All outputs are committed, so builds and tests never need npm; run this after
# editing Settlement.sol (the Makefile's `contracts` target calls it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
abigen_version="v1.17.10" # keep equal to go-ethereum in go.mod

cd "$here"
npm ci --no-audit --no-fund
node compile.js
node merkle-fixtures.js

cd "$root"
mkdir -p ledger/settlementabi
go run "github.com/ethereum/go-ethereum/cmd/abigen@${abigen_version}" --v2 \
  --abi ledger/contracts/build/Settlement.abi \
  --bin ledger/contracts/build/Settlement.bin \
  --pkg settlementabi --type Settlement \
  --out ledger/settlementabi/settlement.go
chmod 644 ledger/settlementabi/settlement.go # abigen writes it 0600
echo "ledger/contracts/build.sh: done"
