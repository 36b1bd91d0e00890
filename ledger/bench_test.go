package ledger

import (
	"context"
	"fmt"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"

	"github.com/faregate/faregate/ledger/merkle"
)

// BenchmarkCommitBatch measures one CommitBatch on the embedded chain, from
// call to mined-and-synced, and reports the gas it used. The first batch pays
// for turning each operator's slot's balance from zero to non-zero (reported as
// gas-first); later batches update them (gas/op).
func BenchmarkCommitBatch(b *testing.B) {
	for _, ops := range []int{10, 100} {
		b.Run(fmt.Sprintf("operators=%d", ops), func(b *testing.B) {
			ctx := context.Background()
			e := openTest(b, b.TempDir())
			if err := admitTestOperators(ctx, e.Admin(), ops); err != nil {
				b.Fatal(err)
			}
			first, _ := testBatch(1, 1000, ops)
			rcpt, err := e.CommitBatch(ctx, first)
			if err != nil {
				b.Fatal(err)
			}
			gasFirst := rcpt.GasUsed
			id := uint64(2)
			var gas uint64
			n := 0
			for b.Loop() {
				batch, _ := testBatch(id, 1000, ops)
				rcpt, err := e.CommitBatch(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				gas += rcpt.GasUsed
				id++
				n++
			}
			// Metrics are reported after the loop: b.Loop resets earlier ones.
			b.ReportMetric(float64(gas)/float64(n), "gas/op")
			b.ReportMetric(float64(gasFirst), "gas-first")
		})
	}
}

// BenchmarkVerifyInclusion measures checking one event's proof at depth 20
// (a period of ~1M events): as the contract's view call through the in-process
// RPC client, and off chain with ledger/merkle.
func BenchmarkVerifyInclusion(b *testing.B) {
	ctx := context.Background()
	tree, err := merkle.New(eventValues(1, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	const i = 123_456
	value := tree.Value(i)
	proof, _ := tree.Proof(i)

	b.Run("view-call", func(b *testing.B) {
		e := openTest(b, b.TempDir())
		batch := Batch{ID: 1, Root: tree.Root(), EventCount: uint64(tree.Len()), PeriodStart: unixUTC(0), PeriodEnd: unixUTC(0)}
		if _, err := e.CommitBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		addr := e.ContractAddress()
		gas, err := e.client.EstimateGas(ctx, ethereum.CallMsg{From: common.Address{}, To: &addr, Data: e.abi.PackVerify(1, value, proof)})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			ok, err := e.VerifyInclusion(ctx, 1, value, proof)
			if err != nil || !ok {
				b.Fatalf("verify = %v, %v", ok, err)
			}
		}
		// gas: eth_estimateGas of the view as a transaction (21000 base and
		// calldata included), what an on-chain caller would pay.
		b.ReportMetric(float64(gas), "gas")
		b.ReportMetric(float64(len(proof)), "depth")
	})
	b.Run("off-chain", func(b *testing.B) {
		for b.Loop() {
			if !merkle.Verify(tree.Root(), value, proof) {
				b.Fatal("does not verify")
			}
		}
		b.ReportMetric(float64(len(proof)), "depth")
	})
}
