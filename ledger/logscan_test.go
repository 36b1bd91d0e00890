package ledger

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
)

// longChainProxy is a JSON-RPC proxy that shows upstream's chain as if
// shift empty blocks, where the contract does not exist yet, came before
// it: a long-lived chain with the contract deployed late. It serves what
// log scans and contract binding ask (block numbers, code, logs, calls at
// the head) and counts the eth_getLogs requests.
func longChainProxy(t *testing.T, upstream string, shift uint64, getLogs *atomic.Int64) string {
	t.Helper()
	type request struct {
		ID     json.RawMessage   `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	post := func(body []byte) []byte {
		resp, err := http.Post(upstream, "application/json", bytes.NewReader(body))
		if err != nil {
			return []byte(`{"jsonrpc":"2.0","id":0,"error":{"code":-32000,"message":"upstream down"}}`)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return out
	}
	result := func(id json.RawMessage, v any) []byte {
		out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": v})
		return out
	}
	// block reads a hex block number; "latest" and the like are the head.
	block := func(raw json.RawMessage) (uint64, bool) {
		var s string
		if json.Unmarshal(raw, &s) != nil || !strings.HasPrefix(s, "0x") {
			return 0, false
		}
		n, err := strconv.ParseUint(s[2:], 16, 64)
		return n, err == nil
	}
	return rpcProxy(t, upstream, func(body []byte) ([]byte, bool) {
		var q request
		if json.Unmarshal(body, &q) != nil {
			return nil, false
		}
		switch q.Method {
		case "eth_blockNumber":
			var r struct{ Result hexutil.Uint64 }
			json.Unmarshal(post(body), &r)
			return result(q.ID, hexutil.Uint64(uint64(r.Result)+shift)), true
		case "eth_getBlockByNumber":
			// Headers (the head a log scan reads to, a block's hash): the
			// number shifted up; a block of the empty stretch is none.
			if n, ok := block(q.Params[0]); ok {
				if n < shift {
					return result(q.ID, nil), true
				}
				q.Params[0], _ = json.Marshal(hexutil.Uint64(n - shift))
			}
			body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": q.ID, "method": q.Method, "params": q.Params})
			var r struct {
				Result map[string]any `json:"result"`
			}
			if err := json.Unmarshal(post(body), &r); err != nil || r.Result == nil {
				return nil, false
			}
			n, _ := strconv.ParseUint(strings.TrimPrefix(r.Result["number"].(string), "0x"), 16, 64)
			r.Result["number"] = hexutil.Uint64(n + shift).String()
			return result(q.ID, r.Result), true
		case "eth_getCode":
			n, ok := block(q.Params[1])
			if !ok {
				return nil, false
			}
			if n < shift {
				return result(q.ID, "0x"), true
			}
			q.Params[1], _ = json.Marshal(hexutil.Uint64(n - shift))
		case "eth_getLogs":
			getLogs.Add(1)
			var f map[string]json.RawMessage
			json.Unmarshal(q.Params[0], &f)
			from, _ := block(f["fromBlock"])
			to, _ := block(f["toBlock"])
			if to < shift {
				return result(q.ID, []any{}), true
			}
			f["fromBlock"], _ = json.Marshal(hexutil.Uint64(from - min(from, shift)))
			f["toBlock"], _ = json.Marshal(hexutil.Uint64(to - shift))
			q.Params[0], _ = json.Marshal(f)
			body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": q.ID, "method": q.Method, "params": q.Params})
			var r struct {
				Result []map[string]any `json:"result"`
			}
			if err := json.Unmarshal(post(body), &r); err != nil {
				return nil, false
			}
			for _, l := range r.Result {
				n, _ := strconv.ParseUint(strings.TrimPrefix(l["blockNumber"].(string), "0x"), 16, 64)
				l["blockNumber"] = hexutil.Uint64(n + shift).String()
			}
			return result(q.ID, r.Result), true
		default:
			return nil, false
		}
		body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": q.ID, "method": q.Method, "params": q.Params})
		return post(body), true
	}, nil)
}

// TestLogScansStartAtDeployment: log scans (who answered which batch, the
// terminal registry) start at the contract's deployment block, not block 0.
// An outside test saw `ledger audit` die on a chain 300,000 blocks long,
// reading 5,000 blocks a request from block 0. The embedded chain records
// the block in ledger.json; a connection to any other node finds it by
// bisecting the node's past state once.
func TestLogScansStartAtDeployment(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	e := openTest(t, dir, WithHTTP("127.0.0.1:0"))

	// ledger.json records the deployment block: the first with the code.
	raw, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if err != nil {
		t.Fatal(err)
	}
	var st embeddedState
	if err := json.Unmarshal(raw, &st); err != nil || st.DeployBlock == 0 {
		t.Fatalf("ledger.json %s: want deployBlock recorded (%v)", raw, err)
	}
	for _, c := range []struct {
		block uint64
		code  bool
	}{{st.DeployBlock - 1, false}, {st.DeployBlock, true}} {
		code, err := e.eth.CodeAt(ctx, e.ContractAddress(), new(big.Int).SetUint64(c.block))
		if err != nil || (len(code) > 0) != c.code {
			t.Fatalf("code at block %d: %d bytes, %v; want code %v (deployBlock %d)", c.block, len(code), err, c.code, st.DeployBlock)
		}
	}

	// An operator answers batch 1.
	metro := fundedAccount(ctx, t, e)
	if _, err := e.Admin().AdmitOperator(ctx, "metro", metro.Address()); err != nil {
		t.Fatal(err)
	}
	b, _ := testBatch(1, 4, 2)
	if _, err := e.CommitBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	ack, err := metro.AcknowledgeBatch(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := e.BatchAnswers(ctx, 0); err != nil || len(got) != 1 || got[0].Operator != "metro" {
		t.Fatalf("BatchAnswers on the embedded chain = %+v, %v", got, err)
	}

	// The same chain behind 300,000 empty blocks: from block 0 that is 61
	// requests of 5,000 blocks.
	const shift = 300_000
	var getLogs atomic.Int64
	c, err := DialReadOnly(ctx, longChainProxy(t, e.HTTPEndpoint(), shift, &getLogs), e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for round := range 2 {
		getLogs.Store(0)
		got, next, err := c.BatchAnswers(ctx, 0)
		if err != nil || len(got) != 1 || got[0] != (BatchAnswer{Block: ack.BlockNumber + shift, BatchID: 1, Operator: "metro"}) {
			t.Fatalf("round %d: BatchAnswers through the long chain = %+v, %v; want metro's answer in block %d", round, got, err, ack.BlockNumber+shift)
		}
		head, _ := c.eth.BlockNumber(ctx)
		if next != head+1 {
			t.Errorf("round %d: next block %d, want %d", round, next, head+1)
		}
		if n := getLogs.Load(); n > 1 {
			t.Errorf("round %d: %d eth_getLogs requests, want 1: the scan must start at the deployment block %d", round, n, st.DeployBlock+shift)
		}
	}
	getLogs.Store(0)
	if got, err := c.TerminalChanges(ctx, 0); err != nil || len(got.Changes) != 0 {
		t.Errorf("TerminalChanges through the long chain = %+v, %v", got.Changes, err)
	}
	if n := getLogs.Load(); n > 1 {
		t.Errorf("TerminalChanges: %d eth_getLogs requests, want 1", n)
	}
}

// TestLogScanHalvesARefusedRange: a provider that refuses a range holding
// more logs than it returns a request (here: any range wider than 2 blocks)
// is asked for halves until it answers (an outside review: the same 5,000
// blocks were asked for again for ever, and the registry never followed).
func TestLogScanHalvesARefusedRange(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	metro := fundedAccount(ctx, t, e)
	if _, err := e.Admin().AdmitOperator(ctx, "metro", metro.Address()); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		b, _ := testBatch(id, 4, 2)
		if _, err := e.CommitBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		if _, err := metro.AcknowledgeBatch(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var refused atomic.Int64
	proxy := rpcProxy(t, e.HTTPEndpoint(), func(body []byte) ([]byte, bool) {
		var q struct {
			ID     json.RawMessage              `json:"id"`
			Method string                       `json:"method"`
			Params []map[string]json.RawMessage `json:"params"`
		}
		if json.Unmarshal(body, &q) != nil || q.Method != "eth_getLogs" || len(q.Params) != 1 {
			return nil, false
		}
		var from, to hexutil.Uint64
		if json.Unmarshal(q.Params[0]["fromBlock"], &from) != nil || json.Unmarshal(q.Params[0]["toBlock"], &to) != nil || to-from < 2 {
			return nil, false
		}
		refused.Add(1)
		out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": q.ID, "error": map[string]any{"code": -32005, "message": "query returned more than 10000 results"}})
		return out, true
	}, nil)
	c, err := DialReadOnly(ctx, proxy, e.ContractAddress().Hex())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, next, err := c.BatchAnswers(ctx, 0)
	head, _ := c.eth.BlockNumber(ctx)
	if err != nil || len(got) != 3 || next != head+1 || refused.Load() == 0 {
		t.Fatalf("answers through a provider refusing wide ranges: %+v, next %d (head %d), %v, %d refused; want all 3", got, next, head, err, refused.Load())
	}
}
