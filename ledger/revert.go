package ledger

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// A call or gas estimate that the contract refuses fails with the bytes the
// contract reverted with: a custom error's 4-byte selector and its
// ABI-encoded arguments. Every JSON-RPC node returns them, but each client
// puts them somewhere else in its error object:
//
//	go-ethereum (also reth, anvil, Erigon, Nethermind since 1.2x):
//	  {"code": 3, "message": "execution reverted", "data": "0x<revert>"}
//	Besu:
//	  {"code": -32000, "message": "Execution reverted", "data": "0x<revert>"}
//	  (the message becomes "Execution reverted: <reason>" for Error(string))
//	Nethermind (older releases):
//	  {"code": -32015, "message": "VM execution error.", "data": "Reverted 0x<revert>"}
//	  {"code": -32015, "message": "VM execution error.", "data": "err: 0x<revert> (supplied gas 36000000)"}
//	Hardhat node:
//	  {"code": -32603, "message": "Error: VM Exception while processing transaction:
//	   reverted with an unrecognized custom error (return data: 0x<revert>)",
//	   "data": {"message": "<the same>", "data": "0x<revert>"}}
//	  (releases before 2.12.5 gave only "... custom error with selector <8 hex digits>")
//	Ganache 7:
//	  {"code": -32000, "message": "VM Exception while processing transaction: revert",
//	   "data": {"hash": "0x<tx>", "programCounter": 123, "result": "0x<revert>", "reason": null, "message": "revert"}}
//	Ganache 6 (ganache-cli, Truffle's develop network):
//	  {"code": -32000, "message": "VM Exception while processing transaction: revert",
//	   "data": {"0x<tx>": {"error": "revert", "program_counter": 123, "return": "0x<revert>"},
//	            "stack": "RuntimeError: ...", "name": "RuntimeError"}}
//
// revertData reads all of these; mapRevert turns what it finds into the
// contract's sentinel errors.

// revertDataKeys are the members of an error's data object that hold the
// revert bytes: data (Hardhat), result (Ganache 7), return (Ganache 6),
// returnData (ethers-style wrappers). A transaction hash ("hash", "txHash")
// is never taken for them.
var revertDataKeys = []string{"data", "result", "return", "returnData"}

// maxRevertDepth bounds how deep revertData looks into nested data objects
// (Ganache 6 nests one level, under the transaction hash).
const maxRevertDepth = 4

// revertMarkers are the words after which a message or data string gives the
// revert bytes, in the order they are tried: Hardhat's "return data:",
// Hardhat's older "with selector" (8 hex digits, no 0x), Nethermind's
// "Reverted" and "err:", any other client's "revert ...: 0x...".
var revertMarkers = []struct {
	word     string
	bare0x   bool // the bytes may come without 0x
	selector bool // only a 4-byte selector follows
}{
	{word: "return data:"},
	{word: "with selector", bare0x: true, selector: true},
	{word: "reverted"},
	{word: "revert"},
	{word: "err:"},
}

// revertData returns the bytes a contract reverted with, read from a
// JSON-RPC error's message and its data member (as encoding/json decodes it:
// a string, a map[string]any, or what a Go client put there: []byte,
// hexutil.Bytes). The data wins over the message: a hex string (0x or bare),
// a string naming the bytes after a revert word, or an object holding them
// (see the client shapes above). Without revert bytes in the data, the
// message is searched for them after a revert word. ok is false when neither
// holds revert bytes; a revert without data gives an empty slice and true.
// It never fails on malformed input: anything it cannot read is no revert.
func revertData(message string, data any) (revert []byte, ok bool) {
	if b, ok := revertFromData(data, 0); ok {
		return b, true
	}
	return revertFromText(message, false)
}

func revertFromData(data any, depth int) ([]byte, bool) {
	switch d := data.(type) {
	case string:
		return revertFromText(d, true)
	case hexutil.Bytes:
		return bytes.Clone([]byte(d)), true
	case []byte:
		return bytes.Clone(d), true
	case map[string]any:
		if depth >= maxRevertDepth {
			return nil, false
		}
		for _, k := range revertDataKeys {
			if v, ok := d[k]; ok {
				if b, ok := revertFromData(v, depth+1); ok {
					return b, true
				}
			}
		}
		// Ganache 6 keys the revert by transaction hash; look into nested
		// objects in a fixed order, so the answer never depends on map order.
		keys := make([]string, 0, len(d))
		for k, v := range d {
			if _, ok := v.(map[string]any); ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			if b, ok := revertFromData(d[k], depth+1); ok {
				return b, true
			}
		}
		if msg, ok := d["message"].(string); ok {
			return revertFromText(msg, false)
		}
	}
	return nil, false
}

// revertFromText reads revert bytes from a message or a data string. A data
// string may be nothing but the bytes in hex, with or without 0x
// (go-ethereum, Besu, Nethermind, Erigon); otherwise, as in any message, the
// bytes are the first 0x token after a revert marker.
func revertFromText(s string, isData bool) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if isData && s != "" {
		if b, ok := decodeRevertHex(s, true); ok {
			return b, true
		}
	}
	// ASCII folding only: it keeps every byte where it was, so an index in
	// lower is one in s (strings.ToLower grows Ⱥ and invalid bytes, and a
	// node's or proxy's error text holding them panicked clearing).
	lower := asciiLower(s)
	for _, m := range revertMarkers {
		i := strings.Index(lower, m.word)
		if i < 0 {
			continue
		}
		rest := s[i+len(m.word):]
		tokens := strings.FieldsFunc(rest, func(r rune) bool {
			return r <= ' ' || strings.ContainsRune(`()[]{},;:"'`, r)
		})
		for _, tok := range tokens {
			if !m.bare0x && !has0x(tok) {
				continue
			}
			b, ok := decodeRevertHex(tok, m.bare0x)
			if !ok || (m.selector && len(b) != 4) {
				break // the first candidate after the marker decides
			}
			return b, true
		}
	}
	return nil, false
}

func has0x(s string) bool { return len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') }

// decodeRevertHex decodes s, "0x" followed by an even number of hex digits
// (or, with bare, the digits alone: at least one byte).
func decodeRevertHex(s string, bare bool) ([]byte, bool) {
	digits := s
	if has0x(s) {
		digits = s[2:]
	} else if !bare || s == "" {
		return nil, false
	}
	b, err := hex.DecodeString(digits)
	if err != nil {
		return nil, false
	}
	if b == nil {
		b = []byte{}
	}
	return b, true
}

// revertSentinels maps each of the Settlement contract's custom errors to the
// sentinel error callers test with errors.Is (TestRevertSentinelsCoverABI
// checks that every error of the ABI has one).
var revertSentinels = map[string]error{
	"BatchExists":            ErrBatchExists,
	"BatchOutOfOrder":        ErrBatchOutOfOrder,
	"UnknownBatch":           ErrBatchNotFound,
	"NotClearingHouse":       ErrNotClearingHouse,
	"NotAdmin":               ErrNotAdmin,
	"NotOperator":            ErrNotOperator,
	"NotTerminalOwner":       ErrNotTerminalOwner,
	"UnknownOperator":        ErrUnknownOperator,
	"OperatorExists":         ErrOperatorExists,
	"TerminalExists":         ErrTerminalExists,
	"UnknownTerminal":        ErrUnknownTerminal,
	"TerminalAlreadyRevoked": ErrTerminalRevoked,
	"AlreadyAnswered":        ErrAlreadyAnswered,
	"InvalidArgument":        ErrInvalidArgument,
	"LengthMismatch":         ErrInvalidArgument,
	"InvalidOperatorOrder":   ErrInvalidBatch,
	"InvalidPeriod":          ErrInvalidBatch,
	"BalanceOverflow":        ErrInvalidBatch,
}

// mapRevert turns a contract revert carried by an RPC error, in any client's
// shape (see revertData), into the matching sentinel error, keeping the
// decoded revert in the message. Other errors pass through unchanged.
func mapRevert(err error) error {
	if err == nil {
		return nil
	}
	message := err.Error()
	var re rpc.Error
	if errors.As(err, &re) {
		message = re.Error()
	}
	var data any
	var de rpc.DataError
	if errors.As(err, &de) {
		data = de.ErrorData()
	}
	raw, ok := revertData(message, data)
	if !ok || len(raw) < 4 {
		return err
	}
	name := ""
	for n, e := range settlementBinding.GetABI().Errors {
		if bytes.Equal(e.ID[:4], raw[:4]) {
			name = n
			break
		}
	}
	sentinel, ok := revertSentinels[name]
	if !ok {
		return err
	}
	if len(raw) == 4 {
		// A node that gives only the selector (older Hardhat): the error is
		// known, its arguments are not.
		return fmt.Errorf("%w (contract reverted: %s, arguments not given by the node)", sentinel, name)
	}
	decoded, decErr := settlementBinding.UnpackError(raw)
	if decErr != nil {
		return fmt.Errorf("%w (contract reverted: %s, arguments not decoded: %v)", sentinel, name, decErr)
	}
	return fmt.Errorf("%w (contract reverted: %s%s)", sentinel, name, revertArgs(reflect.Indirect(reflect.ValueOf(decoded))))
}

// revertArgs formats a decoded revert's fields; bytes32 ids are shown as the
// ASCII they hold (operator ids) or as hex (hashes).
func revertArgs(v reflect.Value) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range v.NumField() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(v.Type().Field(i).Name)
		b.WriteByte(':')
		switch f := v.Field(i).Interface().(type) {
		case [32]byte:
			if id := DecodeOperator(f); id != "" && strings.IndexFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) < 0 {
				fmt.Fprintf(&b, "%q", id)
			} else {
				b.WriteString(hexutil.Encode(f[:]))
			}
		default:
			fmt.Fprint(&b, f)
		}
	}
	b.WriteByte('}')
	return b.String()
}

// asciiLower lower-cases the ASCII letters of s, leaving every other byte.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
