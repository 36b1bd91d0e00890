package ledger

import (
	"context"
	"fmt"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

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

// BenchmarkRoleTransactions reports the gas of each role transaction on the
// embedded chain: admitting an operator, registering terminals (one, and 100
// in one transaction: gas per terminal), revoking one, acknowledging and
// disputing a batch. Gas is deterministic; the time is per transaction.
func BenchmarkRoleTransactions(b *testing.B) {
	ctx := context.Background()
	e := openTest(b, b.TempDir())
	first, _ := testBatch(1, 10, 3)
	if _, err := e.CommitBatch(ctx, first); err != nil {
		b.Fatal(err)
	}
	n := 0
	gas := map[string]uint64{}
	for b.Loop() {
		op, err := e.OperatorAccount(ctx, fmt.Sprintf("bench-%04d", n))
		if err != nil {
			b.Fatal(err)
		}
		key, _ := crypto.GenerateKey()
		ra, err := e.Admin().AdmitOperator(ctx, fmt.Sprintf("extra-%04d", n), crypto.PubkeyToAddress(key.PublicKey))
		if err != nil {
			b.Fatal(err)
		}
		gas["admit"] = ra.GasUsed
		var regs []TerminalRegistration
		for i := range 101 {
			regs = append(regs, TerminalRegistration{ID: fmt.Sprintf("bench-%04d-gate-%03d", n, i), Stop: fmt.Sprintf("stop-%03d", i/4), PublicKey: [32]byte{byte(i + 1), byte(n)}, KeyProof: testKeyProof})
		}
		one, err := op.RegisterTerminals(ctx, regs[:1])
		if err != nil {
			b.Fatal(err)
		}
		hundred, err := op.RegisterTerminals(ctx, regs[1:])
		if err != nil {
			b.Fatal(err)
		}
		rev, err := op.RevokeTerminal(ctx, regs[0].ID)
		if err != nil {
			b.Fatal(err)
		}
		var r Receipt
		if n%2 == 0 {
			r, err = op.AcknowledgeBatch(ctx, 1)
		} else {
			r, err = op.DisputeBatch(ctx, 1, [32]byte{1})
		}
		if err != nil {
			b.Fatal(err)
		}
		gas["register-1"] = one[0].GasUsed
		gas["register-100-per-terminal"] = hundred[0].GasUsed / 100
		gas["revoke"] = rev.GasUsed
		if n%2 == 0 {
			gas["acknowledge"] = r.GasUsed
		} else {
			gas["dispute"] = r.GasUsed
		}
		n++
	}
	for k, v := range gas {
		b.ReportMetric(float64(v), "gas-"+k)
	}
}
