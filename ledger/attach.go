package ledger

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/params"

	"github.com/faregate/faregate/fare"
)

// nodeFileName, in an embedded chain's dir, holds the JSON-RPC endpoint of
// the process running the node (opened WithHTTP), removed when it closes.
const nodeFileName = "node.json"

// nodeState is the node.json file.
type nodeState struct {
	RPC string `json:"rpc"`
	PID int    `json:"pid"`
}

// ErrNotRunning is returned by AttachEmbedded when no process serves the
// embedded chain in the dir: the caller may open the dir itself.
var ErrNotRunning = errors.New("no running node serves this embedded chain")

func writeNodeFile(dir, endpoint string) error {
	raw, _ := json.Marshal(nodeState{RPC: endpoint, PID: os.Getpid()})
	if err := writeFileAtomic(filepath.Join(dir, nodeFileName), append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("record the node's endpoint: %w", err)
	}
	return nil
}

// removeNodeFile removes node.json if it still names endpoint (a later
// process may have taken the dir over).
func removeNodeFile(dir, endpoint string) {
	path := filepath.Join(dir, nodeFileName)
	raw, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var st nodeState
	if json.Unmarshal(raw, &st) == nil && st.RPC == endpoint {
		os.Remove(path)
	}
}

// Attached is an embedded chain reached through the JSON-RPC endpoint of
// the process that runs it (clearing, usually), acting with the keys its
// data dir holds: the clearing house's, the admin's and the custodial
// operators'. It is how the role commands work while clearing runs, when
// the dir itself is locked by the running node.
type Attached struct {
	*Client
	dir      string
	endpoint string
	adminKey *ecdsa.PrivateKey
}

// AttachEmbedded connects to the node serving the embedded chain in dir.
// It returns an error wrapping ErrNotRunning when there is none (no
// node.json, or its endpoint does not answer as this chain), and binds to
// the contract recorded in dir's ledger.json, never deploying one.
func AttachEmbedded(ctx context.Context, dir string) (*Attached, error) {
	raw, err := os.ReadFile(filepath.Join(dir, nodeFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("attach to %s: %w", dir, ErrNotRunning)
	}
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", dir, err)
	}
	var node nodeState
	if err := json.Unmarshal(raw, &node); err != nil || node.RPC == "" {
		return nil, fmt.Errorf("attach to %s: %s is not a node record", dir, nodeFileName)
	}
	rawState, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if err != nil {
		return nil, fmt.Errorf("attach to %s: no deployed contract recorded: %w", dir, err)
	}
	var st embeddedState
	if err := json.Unmarshal(rawState, &st); err != nil {
		return nil, fmt.Errorf("attach to %s: %s: %w", dir, stateFileName, err)
	}
	key, err := readKeyFile(filepath.Join(dir, keyFileName))
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", dir, err)
	}
	admin, err := readKeyFile(filepath.Join(dir, adminKeyName))
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", dir, err)
	}
	// A node.json left by a process killed with -9 names an endpoint that
	// no longer answers: that is "not running", not an error.
	probe, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := dialKey(probe, node.RPC, key, st.Contract.Hex())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("attach to %s: %w (node.json names %s, which does not answer as this chain: %v)", dir, ErrNotRunning, node.RPC, err)
	}
	if c.chainID.Uint64() != EmbeddedChainID {
		c.Close()
		return nil, fmt.Errorf("attach to %s: %w (%s is chain %s, not the embedded chain %d)", dir, ErrNotRunning, node.RPC, c.chainID, EmbeddedChainID)
	}
	if st.DeployBlock != 0 {
		c.setLogStart(st.DeployBlock)
	}
	return &Attached{Client: c, dir: dir, endpoint: node.RPC, adminKey: admin}, nil
}

// Endpoint is the running node's JSON-RPC URL.
func (a *Attached) Endpoint() string { return a.endpoint }

// Admin is the contract admin's Account.
func (a *Attached) Admin() *Account { return a.Account(a.adminKey) }

// OperatorAccount is Embedded.OperatorAccount through the running node.
func (a *Attached) OperatorAccount(ctx context.Context, id string) (*Account, error) {
	return custodialOperator(ctx, a.Admin(), a.dir, id)
}

// ReplaceOperatorKey is Embedded.ReplaceOperatorKey through the running node.
func (a *Attached) ReplaceOperatorKey(ctx context.Context, id string) (*Account, Receipt, error) {
	return replaceCustodialOperator(ctx, a.Admin(), a.dir, id)
}

// custodialOperator returns operator id's Account with its key kept in dir,
// admitting and funding it first if needed.
func custodialOperator(ctx context.Context, admin *Account, dir, id string) (*Account, error) {
	keyFile, err := custodialKeyFile(dir, id)
	if err != nil {
		return nil, err
	}
	if err := finishKeyReplacement(ctx, admin, keyFile); err != nil {
		return nil, fmt.Errorf("operator account %q: %w", id, err)
	}
	return admin.EnsureOperator(ctx, id, keyFile, custodialFunds())
}

// custodialFunds is what a custodial operator's account is topped up to.
func custodialFunds() *big.Int { return new(big.Int).Mul(big.NewInt(1000), big.NewInt(params.Ether)) }

// custodialKeyFile is operator id's key file in dir (its directory made).
func custodialKeyFile(dir, id string) (string, error) {
	if _, err := EncodeOperator(id); err != nil {
		return "", fmt.Errorf("operator account: %w", err)
	}
	if strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return "", fmt.Errorf("operator account: %w: id %q cannot name a key file", ErrInvalidArgument, id)
	}
	if err := os.MkdirAll(filepath.Join(dir, operatorsDir), 0o700); err != nil {
		return "", fmt.Errorf("operator account %q: %w", id, err)
	}
	return filepath.Join(dir, operatorsDir, id+".key"), nil
}

// replaceCustodialOperator moves custodial operator id to a new key of its
// own (the old one lost or stolen): a new key is written beside the old
// (KEY.new), the contract moved to its account, the old file kept as
// KEY.replaced-TIME and the new one put in its place, and the new account
// funded. A stop between the contract's move and the files' is finished
// by the next use of the operator's key (finishKeyReplacement).
func replaceCustodialOperator(ctx context.Context, admin *Account, dir, id string) (*Account, Receipt, error) {
	keyFile, err := custodialKeyFile(dir, id)
	if err != nil {
		return nil, Receipt{}, err
	}
	info, err := admin.s.Operator(ctx, id)
	if err != nil {
		return nil, Receipt{}, fmt.Errorf("replace operator %q's key: %w", id, err)
	}
	key, err := loadOrCreateKey(keyFile + newKeySuffix)
	if err != nil {
		return nil, Receipt{}, fmt.Errorf("replace operator %q's key: new key: %w", id, err)
	}
	var r Receipt
	if addr := crypto.PubkeyToAddress(key.PublicKey); info.Account != addr {
		if r, err = admin.ReplaceOperatorAccount(ctx, id, addr); err != nil {
			return nil, r, err
		}
	}
	if err := finishKeyReplacement(ctx, admin, keyFile); err != nil {
		return nil, r, fmt.Errorf("replace operator %q's key: %w", id, err)
	}
	acct, err := admin.EnsureOperator(ctx, id, keyFile, custodialFunds())
	return acct, r, err
}

// newKeySuffix names a custodial key made to replace the one beside it.
const newKeySuffix = ".new"

// finishKeyReplacement puts keyFile+".new" in keyFile's place (the old kept
// as keyFile.replaced-TIME) once the contract holds the new key's account;
// a .new the contract does not hold yet (a replacement stopped before its
// transaction) is left for the replacement to finish.
func finishKeyReplacement(ctx context.Context, admin *Account, keyFile string) error {
	newFile := keyFile + newKeySuffix
	if _, err := os.Stat(newFile); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	key, err := readKeyFile(newFile)
	if err != nil {
		return err
	}
	id := strings.TrimSuffix(filepath.Base(keyFile), ".key")
	info, err := admin.s.Operator(ctx, id)
	if err != nil {
		return err
	}
	if info.Account != crypto.PubkeyToAddress(key.PublicKey) {
		return nil
	}
	kept := ""
	if _, err := os.Stat(keyFile); err == nil {
		// Linked under a name no other holds (two replacements within a
		// second kept one key over the other: an outside recheck), then
		// replaced below in one rename.
		stamp := keyFile + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		for i := 0; ; i++ {
			kept = stamp
			if i > 0 {
				kept = fmt.Sprintf("%s-%d", stamp, i)
			}
			err := os.Link(keyFile, kept)
			if err == nil {
				break
			}
			if !errors.Is(err, fs.ErrExist) || i == 100 {
				return fmt.Errorf("keep the replaced key: %w", err)
			}
		}
	}
	if err := os.Rename(newFile, keyFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) && kept != "" {
			// Another caller finished it first: what was linked is the
			// live key, not a replaced one.
			return os.Remove(kept)
		}
		return fmt.Errorf("put the new key in place: %w", err)
	}
	return fare.SyncDir(filepath.Dir(keyFile))
}
