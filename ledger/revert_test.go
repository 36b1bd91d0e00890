package ledger

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
)

// packRevert is what the contract reverts with for its custom error name.
func packRevert(t testing.TB, name string, args ...any) []byte {
	t.Helper()
	e, ok := settlementBinding.GetABI().Errors[name]
	if !ok {
		t.Fatalf("the contract has no error %s", name)
	}
	enc, err := e.Inputs.Pack(args...)
	if err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(e.ID[:4]), enc...)
}

// besuErrorString is Error("ERC20: transfer amount exceeds balance") as Besu
// returns it (besu-eth/besu issue #5705).
const besuErrorString = "0x08c379a00000000000000000000000000000000000000000000000000000000000000020000000000000000000000000000000000000000000000000000000000000002645524332303a207472616e7366657220616d6f756e7420657863656564732062616c616e63650000000000000000000000000000000000000000000000000000"

// revertCases are JSON-RPC error objects as each client returns them for a
// call the contract refuses. {{0xR}} stands for the revert bytes in 0x hex,
// {{R}} for them without 0x, {{SEL}} for their selector without 0x. want says
// what revertData must find: "revert" (the bytes), "selector" (their first 4
// bytes), "empty", "error-string" (besuErrorString), or "none".
var revertCases = []struct {
	name, client, obj, want string
}{
	{"geth custom error", "go-ethereum 1.17 (internal/ethapi revertError, code 3)",
		`{"code": 3, "message": "execution reverted", "data": "{{0xR}}"}`, "revert"},
	{"geth revert without data", "go-ethereum since PR 31456 (code 3 even without a reason)",
		`{"code": 3, "message": "execution reverted", "data": "0x"}`, "empty"},
	{"geth before 1.9.15", "go-ethereum (code -32000, data as now)",
		`{"code": -32000, "message": "execution reverted", "data": "{{0xR}}"}`, "revert"},
	{"besu custom error", "Besu RpcErrorType.REVERT_ERROR (-32000, \"Execution reverted\"; custom errors get no reason in the message)",
		`{"code": -32000, "message": "Execution reverted", "data": "{{0xR}}"}`, "revert"},
	{"besu Error(string)", "Besu 23.7+ (PR 5706 appends the decoded reason to the message)",
		`{"code": -32000, "message": "Execution reverted: ERC20: transfer amount exceeds balance", "data": "` + besuErrorString + `"}`, "error-string"},
	{"besu code 3", "Besu aligned with go-ethereum's code 3",
		`{"code": 3, "message": "Execution reverted", "data": "{{0xR}}"}`, "revert"},
	{"nethermind current", "Nethermind (code -32000, viem PR 4092)",
		`{"code": -32000, "message": "execution reverted", "data": "{{0xR}}"}`, "revert"},
	{"nethermind Reverted", "Nethermind before 1.20 (cowprotocol/watch-tower issue 11)",
		`{"code": -32015, "message": "VM execution error.", "data": "Reverted {{0xR}}"}`, "revert"},
	{"nethermind err", "Nethermind 1.3x (NethermindEth/nethermind issue 8813)",
		`{"code": -32015, "message": "VM execution error.", "data": "err: {{0xR}} (supplied gas 36000000)"}`, "revert"},
	{"data without 0x", "Nethermind and Erigon releases that drop the prefix",
		`{"code": -32000, "message": "execution reverted", "data": "{{R}}"}`, "revert"},
	{"nethermind no data", "Nethermind 1.8 (NethermindEth/nethermind issue 2098)",
		`{"code": -32015, "message": "VM execution error.", "data": "revert"}`, "none"},
	{"hardhat", "Hardhat node 2.12.5+ (PR 3470: return data in the message; data object)",
		`{"code": -32603, "message": "Error: VM Exception while processing transaction: reverted with an unrecognized custom error (return data: {{0xR}})", "data": {"message": "Error: VM Exception while processing transaction: reverted with an unrecognized custom error (return data: {{0xR}})", "data": "{{0xR}}"}}`, "revert"},
	{"hardhat message only", "Hardhat node: the revert only in the message (issue 12's case)",
		`{"code": -32603, "message": "VM Exception while processing transaction: reverted with an unrecognized custom error (return data: {{0xR}})"}`, "revert"},
	{"hardhat data object without data", "Hardhat node: the message repeated in the data object",
		`{"code": -32603, "message": "Internal error", "data": {"message": "Error: VM Exception while processing transaction: reverted with an unrecognized custom error (return data: {{0xR}})"}}`, "revert"},
	{"hardhat 3", "Hardhat 3 before PR 8310 (code 3, data object with txHash)",
		`{"code": 3, "message": "execution reverted", "data": {"message": "execution reverted", "txHash": "0x` + strings.Repeat("ab", 32) + `", "data": "{{0xR}}"}}`, "revert"},
	{"hardhat selector", "Hardhat 2.10.2 (PR 2973: only the selector)",
		`{"code": -32603, "message": "Error: VM Exception while processing transaction: reverted with an unrecognized custom error with selector {{SEL}}"}`, "selector"},
	{"anvil", "anvil (code 3, the selector in the message, the bytes in data)",
		`{"code": 3, "message": "execution reverted: custom error 0x8d6ea8be: something", "data": "{{0xR}}"}`, "revert"},
	{"ganache 7", "Ganache 7 (@ganache/ethereum-utils RuntimeError)",
		`{"code": -32000, "message": "VM Exception while processing transaction: revert", "data": {"hash": "0x` + strings.Repeat("cd", 32) + `", "programCounter": 1234, "result": "{{0xR}}", "reason": null, "message": "revert"}}`, "revert"},
	{"ganache 6", "ganache-cli 6 / ganache-core 2 (data keyed by the transaction hash)",
		`{"code": -32000, "message": "VM Exception while processing transaction: revert", "data": {"0x` + strings.Repeat("ef", 32) + `": {"error": "revert", "program_counter": 1234, "return": "{{0xR}}"}, "stack": "RuntimeError: VM Exception while processing transaction: revert", "name": "RuntimeError"}}`, "revert"},
	{"substrate frontier", "Frontier (Moonbeam, Astar; ethers.js issue 4154)",
		`{"code": -32603, "message": "VM Exception while processing transaction: revert", "data": "{{0xR}}"}`, "revert"},
	{"nonce too low", "go-ethereum txpool (no revert)",
		`{"code": -32000, "message": "nonce too low"}`, "none"},
	{"insufficient funds", "go-ethereum (an address in the message is no revert)",
		`{"code": -32000, "message": "insufficient funds for gas * price + value: address 0x71562b71999873DB5b286dF957af199Ec94617F7 have 0 want 1"}`, "none"},
	{"malformed hex", "a broken node",
		`{"code": 3, "message": "execution reverted", "data": "0xzz"}`, "none"},
	{"odd hex", "a broken node",
		`{"code": 3, "message": "execution reverted: 0x123", "data": "0x123"}`, "none"},
	{"deep nesting", "a broken node",
		`{"code": -32000, "message": "revert", "data": {"a": {"b": {"c": {"d": {"e": {"return": "{{0xR}}"}}}}}}}`, "none"},
}

// revertObject returns c's error object with the placeholders filled in.
func revertObject(obj string, revert []byte) string {
	h := hex.EncodeToString(revert)
	return strings.NewReplacer("{{0xR}}", "0x"+h, "{{R}}", h, "{{SEL}}", h[:8]).Replace(obj)
}

// TestRevertData reads the revert bytes from every client's error shape.
func TestRevertData(t *testing.T) {
	revert := packRevert(t, "UnknownTerminal", "metro-gate-0001")
	errString, _ := hex.DecodeString(besuErrorString[2:])
	for _, c := range revertCases {
		t.Run(c.name, func(t *testing.T) {
			var obj struct {
				Message string `json:"message"`
				Data    any    `json:"data"`
			}
			if err := json.Unmarshal([]byte(revertObject(c.obj, revert)), &obj); err != nil {
				t.Fatalf("%s: %v", c.client, err)
			}
			got, ok := revertData(obj.Message, obj.Data)
			var want []byte
			switch c.want {
			case "revert":
				want = revert
			case "selector":
				want = revert[:4]
			case "empty":
				want = []byte{}
			case "error-string":
				want = errString
			}
			if ok != (want != nil) || !bytes.Equal(got, want) {
				t.Errorf("%s: revertData = %x, %v; want %x, %v", c.client, got, ok, want, want != nil)
			}
		})
	}
}

// TestRevertDataGoValues: what a Go JSON-RPC client may put in an error's
// data besides decoded JSON.
func TestRevertDataGoValues(t *testing.T) {
	revert := packRevert(t, "NotAdmin", common.Address{1})
	for _, data := range []any{revert, hexutil.Bytes(revert), json.RawMessage(nil), nil, 42.0, true, []any{"0x" + hex.EncodeToString(revert)}} {
		got, ok := revertData("", data)
		var want []byte
		switch data.(type) {
		case []byte, hexutil.Bytes:
			want = revert
		}
		if ok != (want != nil) || !bytes.Equal(got, want) {
			t.Errorf("data %T: %x, %v", data, got, ok)
		}
	}
}

// TestRevertSentinelsCoverABI: every custom error of the contract maps to a
// sentinel, and nothing else is in the map.
func TestRevertSentinelsCoverABI(t *testing.T) {
	errs := settlementBinding.GetABI().Errors
	for name := range errs {
		if revertSentinels[name] == nil {
			t.Errorf("contract error %s has no sentinel in revertSentinels", name)
		}
	}
	for name := range revertSentinels {
		if _, ok := errs[name]; !ok {
			t.Errorf("revertSentinels names %s, which the contract does not have", name)
		}
	}
}

// rpcErrorServer answers every JSON-RPC request with the error object obj.
func rpcErrorServer(t *testing.T, obj *atomic.Value) *rpc.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc": "2.0", "id": %s, "error": %s}`, req.ID, obj.Load().(string))
	}))
	t.Cleanup(srv.Close)
	c, err := rpc.DialHTTP(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestMapRevertClientShapes sends each client's error object through
// go-ethereum's JSON-RPC client, as a call would get it, and maps it: the
// contract's UnknownTerminal is ErrUnknownTerminal (what register-terminals
// reads as "not registered yet") from every client.
func TestMapRevertClientShapes(t *testing.T) {
	revert := packRevert(t, "UnknownTerminal", "metro-gate-0001")
	var obj atomic.Value
	c := rpcErrorServer(t, &obj)
	for _, tc := range revertCases {
		obj.Store(revertObject(tc.obj, revert))
		var res string
		err := c.CallContext(t.Context(), &res, "eth_call")
		if err == nil {
			t.Fatalf("%s: no error", tc.name)
		}
		mapped := mapRevert(fmt.Errorf("read terminal: %w", err))
		switch tc.want {
		case "revert":
			if !errors.Is(mapped, ErrUnknownTerminal) || !strings.Contains(mapped.Error(), "UnknownTerminal{Id:metro-gate-0001}") {
				t.Errorf("%s (%s): %v", tc.name, tc.client, mapped)
			}
		case "selector":
			if !errors.Is(mapped, ErrUnknownTerminal) || !strings.Contains(mapped.Error(), "arguments not given") {
				t.Errorf("%s (%s): %v", tc.name, tc.client, mapped)
			}
		default:
			for _, s := range revertSentinels {
				if errors.Is(mapped, s) {
					t.Errorf("%s (%s): mapped to %v", tc.name, tc.client, s)
				}
			}
			if !errors.Is(mapped, err) {
				t.Errorf("%s: the original error is lost: %v", tc.name, mapped)
			}
		}
	}
	// A revert of another contract (its selector unknown here) passes through.
	obj.Store(`{"code": 3, "message": "execution reverted", "data": "0xdeadbeef"}`)
	var res string
	err := c.CallContext(t.Context(), &res, "eth_call")
	if mapped := mapRevert(err); mapped != err {
		t.Errorf("unknown selector: %v", mapped)
	}
	// Arguments that do not decode still name the error.
	obj.Store(`{"code": 3, "message": "execution reverted", "data": "0x` + hex.EncodeToString(revert[:8]) + `"}`)
	err = c.CallContext(t.Context(), &res, "eth_call")
	if mapped := mapRevert(err); !errors.Is(mapped, ErrUnknownTerminal) || !strings.Contains(mapped.Error(), "not decoded") {
		t.Errorf("truncated arguments: %v", mapped)
	}
	if mapRevert(nil) != nil {
		t.Error("mapRevert(nil) is not nil")
	}
}

// nodeShapes rewrite go-ethereum's revert error (code 3, data hex) into
// another client's shape, for the JSON-RPC proxy of TestRevertThroughOtherNodes.
var nodeShapes = map[string]func(hexData string) map[string]any{
	// Besu: RpcErrorType.REVERT_ERROR.
	"besu": func(h string) map[string]any {
		return map[string]any{"code": -32000, "message": "Execution reverted", "data": h}
	},
	// Hardhat node 2.12.5+: the bytes in the message and in a data object.
	"hardhat": func(h string) map[string]any {
		msg := "Error: VM Exception while processing transaction: reverted with an unrecognized custom error (return data: " + h + ")"
		return map[string]any{"code": -32603, "message": msg, "data": map[string]any{"message": msg, "data": h}}
	},
	// A node that gives the revert only in its message (issue 12).
	"hardhat-message": func(h string) map[string]any {
		return map[string]any{"code": -32603, "message": "VM Exception while processing transaction: reverted with an unrecognized custom error (return data: " + h + ")"}
	},
	// ganache-cli 6: keyed by the transaction hash.
	"ganache6": func(h string) map[string]any {
		return map[string]any{"code": -32000, "message": "VM Exception while processing transaction: revert", "data": map[string]any{
			"0x" + strings.Repeat("ef", 32): map[string]any{"error": "revert", "program_counter": 1234, "return": h},
			"stack":                         "RuntimeError: VM Exception while processing transaction: revert", "name": "RuntimeError"}}
	},
	// Nethermind before 1.20.
	"nethermind": func(h string) map[string]any {
		return map[string]any{"code": -32015, "message": "VM execution error.", "data": "Reverted " + h}
	},
}

// revertProxy is a JSON-RPC proxy in front of upstream that answers every
// go-ethereum revert error in shape's form, counting the rewrites.
func revertProxy(t *testing.T, upstream string, shape func(string) map[string]any, rewrites *atomic.Int64) string {
	t.Helper()
	rewrite := func(msg json.RawMessage) json.RawMessage {
		var m map[string]json.RawMessage
		if json.Unmarshal(msg, &m) != nil || m["error"] == nil {
			return msg
		}
		var e struct {
			Code int    `json:"code"`
			Data string `json:"data"`
		}
		if json.Unmarshal(m["error"], &e) != nil || e.Code != 3 || !strings.HasPrefix(e.Data, "0x") {
			return msg
		}
		obj, _ := json.Marshal(shape(e.Data))
		m["error"] = obj
		out, _ := json.Marshal(m)
		rewrites.Add(1)
		return out
	}
	return rpcProxy(t, upstream, nil, func(out []byte) []byte {
		if trimmed := bytes.TrimSpace(out); len(trimmed) > 0 && trimmed[0] == '[' {
			var batch []json.RawMessage
			if json.Unmarshal(trimmed, &batch) == nil {
				for i := range batch {
					batch[i] = rewrite(batch[i])
				}
				out, _ = json.Marshal(batch)
			}
			return out
		}
		return rewrite(out)
	})
}

// TestRevertThroughOtherNodes runs the role commands' calls over JSON-RPC
// against the real embedded chain behind a proxy that answers reverts as
// Besu, Hardhat, Ganache and Nethermind do: reads of an unknown terminal are
// ErrUnknownTerminal (register-terminals' "not registered yet", then it
// registers), and refused transactions fail with their role errors before
// anything is sent.
func TestRevertThroughOtherNodes(t *testing.T) {
	ctx := testContext(t)
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	keyFile := func(k string) string {
		p := filepath.Join(t.TempDir(), k+".key")
		key, _ := crypto.GenerateKey()
		if err := e.Fund(ctx, crypto.PubkeyToAddress(key.PublicKey), new(big.Int).Mul(big.NewInt(10), big.NewInt(params.Ether))); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("0x"+hex.EncodeToString(crypto.FromECDSA(key))), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The tram operator registers its terminals over the proxies; a stranger
	// tries what only the admin and the clearing house may do.
	opFile, strangerFile := keyFile("tram"), keyFile("stranger")
	opKey, err := ReadKeyFile(opFile)
	if err != nil {
		t.Fatal(err)
	}
	strangerKey, _ := ReadKeyFile(strangerFile)
	if _, err := e.Admin().AdmitOperator(ctx, "tram", crypto.PubkeyToAddress(opKey.PublicKey)); err != nil {
		t.Fatal(err)
	}

	shapes := append([]string{"geth"}, func() []string {
		var s []string
		for k := range nodeShapes {
			s = append(s, k)
		}
		slices.Sort(s)
		return s
	}()...)
	for _, name := range shapes {
		t.Run(name, func(t *testing.T) {
			var rewrites atomic.Int64
			url := e.HTTPEndpoint()
			if shape := nodeShapes[name]; shape != nil {
				url = revertProxy(t, url, shape, &rewrites)
			}
			op, err := Dial(ctx, url, opFile, e.ContractAddress().Hex())
			if err != nil {
				t.Fatal(err)
			}
			defer op.Close()
			id := "tram-" + name
			if _, err := op.Terminal(ctx, id); !errors.Is(err, ErrUnknownTerminal) {
				t.Fatalf("unknown terminal: %v, want ErrUnknownTerminal", err)
			}
			reg := []TerminalRegistration{{ID: id, Stop: "harbour", PublicKey: [32]byte{7}, KeyProof: testKeyProof}}
			if _, err := op.KeyAccount().RegisterTerminals(ctx, reg); err != nil {
				t.Fatalf("register: %v", err)
			}
			if got, err := op.Terminal(ctx, id); err != nil || got.Operator != "tram" {
				t.Fatalf("registered terminal: %+v, %v", got, err)
			}
			if _, err := op.KeyAccount().RegisterTerminals(ctx, reg); !errors.Is(err, ErrTerminalExists) {
				t.Errorf("registering again: %v, want ErrTerminalExists", err)
			}

			stranger, err := Dial(ctx, url, strangerFile, e.ContractAddress().Hex())
			if err != nil {
				t.Fatal(err)
			}
			defer stranger.Close()
			if _, err := stranger.Account(strangerKey).AdmitOperator(ctx, "bus-"+name, common.Address{9}); !errors.Is(err, ErrNotAdmin) {
				t.Errorf("admit by a stranger: %v, want ErrNotAdmin", err)
			}
			if _, err := stranger.KeyAccount().RevokeTerminal(ctx, id); !errors.Is(err, ErrNotOperator) {
				t.Errorf("revoke by a stranger: %v, want ErrNotOperator", err)
			}
			b, _ := testBatch(1, 4, 2)
			if _, err := stranger.CommitBatch(ctx, b); !errors.Is(err, ErrNotClearingHouse) {
				t.Errorf("commit by a stranger: %v, want ErrNotClearingHouse", err)
			}
			if name != "geth" && rewrites.Load() < 5 {
				t.Errorf("the proxy rewrote %d reverts, want one per refused call (5)", rewrites.Load())
			}
		})
	}
}

// FuzzRevertData feeds revertData arbitrary messages and data (decoded from
// JSON as a client decodes it): it never panics, answers the same twice and
// finds no more bytes than the input holds.
func FuzzRevertData(f *testing.F) {
	revert := packRevert(f, "UnknownTerminal", "metro-gate-0001")
	for _, c := range revertCases {
		var obj struct {
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(revertObject(c.obj, revert)), &obj); err != nil {
			f.Fatal(err)
		}
		f.Add(obj.Message, []byte(obj.Data))
	}
	f.Add("", []byte(`"0x"`))
	f.Add("reverted with selector 0x", []byte(`{"data": {"data": {"data": "0x00"}}}`))
	// Text whose lower case is longer than itself (an outside fuzz run:
	// slice bounds out of range).
	f.Add("\xe7revert", []byte("0"))
	f.Add("ȺȺȺ execution reverted", []byte("0"))
	f.Add("Ⱦ revert 0x08c379a0", []byte("0"))
	f.Fuzz(func(t *testing.T, message string, dataJSON []byte) {
		var data any
		if json.Unmarshal(dataJSON, &data) != nil {
			data = string(dataJSON)
		}
		got, ok := revertData(message, data)
		again, ok2 := revertData(message, data)
		if ok != ok2 || !bytes.Equal(got, again) {
			t.Fatalf("two answers: %x %v, %x %v", got, ok, again, ok2)
		}
		if !ok && got != nil {
			t.Fatalf("no revert but bytes %x", got)
		}
		if 2*len(got) > len(message)+len(dataJSON) {
			t.Fatalf("%d bytes from %d of input", len(got), len(message)+len(dataJSON))
		}
	})
}

// FuzzRevertShapes: any revert bytes, in any client's shape, read back as
// exactly those bytes.
func FuzzRevertShapes(f *testing.F) {
	f.Add([]byte{})
	f.Add(packRevert(f, "UnknownTerminal", "metro-gate-0001"))
	f.Add(packRevert(f, "AlreadyAnswered", uint64(7), [32]byte{'m', 'e', 't', 'r', 'o'}))
	f.Fuzz(func(t *testing.T, revert []byte) {
		h := "0x" + hex.EncodeToString(revert)
		objs := []map[string]any{{"code": 3, "message": "execution reverted", "data": h}}
		for _, shape := range nodeShapes {
			objs = append(objs, shape(h))
		}
		for _, o := range objs {
			raw, _ := json.Marshal(o)
			var obj struct {
				Message string `json:"message"`
				Data    any    `json:"data"`
			}
			if err := json.Unmarshal(raw, &obj); err != nil {
				t.Fatal(err)
			}
			got, ok := revertData(obj.Message, obj.Data)
			if !ok || !bytes.Equal(got, revert) {
				t.Fatalf("%s: got %x, %v; want %x", raw, got, ok, revert)
			}
		}
	})
}
