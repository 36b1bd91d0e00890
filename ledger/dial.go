package ledger

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"
)

// Client is a Ledger on any Ethereum JSON-RPC endpoint, signing commits with a
// clearing-house key. It implements Ledger.
type Client struct {
	*settlement
	closed atomic.Bool
}

var _ Ledger = (*Client)(nil)

// dialPollMax caps receipt polling against a remote node: slots are seconds
// long there, and polling faster only loads the node.
const dialPollMax = 500 * time.Millisecond

// Dial connects to the JSON-RPC endpoint rpcURL (http(s), ws(s) or an IPC
// path) and signs with the hex private key in keyFile (optional 0x prefix). With
// contract set to the Settlement contract's address, it binds to that contract
// (which must exist); with contract "" it deploys a new one, whose admin and
// clearing house are both the key's account, and logs its address
// (ContractAddress returns it) so it can be configured from then on. Production
// deployments keep the two roles apart: see Deploy.
func Dial(ctx context.Context, rpcURL string, keyFile string, contract string) (*Client, error) {
	key, err := readKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("dial ledger %s: %w", rpcURL, err)
	}
	return dialKey(ctx, rpcURL, key, contract)
}

// DialReadOnly connects to the JSON-RPC endpoint rpcURL and binds to the
// Settlement contract at contract without a key: for those who only read the
// ledger (an audit, a proof, a status). Every transaction it is asked to send
// fails with ErrReadOnly, and KeyAccount is nil.
func DialReadOnly(ctx context.Context, rpcURL string, contract string) (*Client, error) {
	if contract == "" {
		return nil, fmt.Errorf("dial ledger %s read-only: no contract address (a read-only connection deploys nothing)", rpcURL)
	}
	return dialKey(ctx, rpcURL, nil, contract)
}

// dialKey is Dial with the key in hand (nil: read-only).
func dialKey(ctx context.Context, rpcURL string, key *ecdsa.PrivateKey, contract string) (*Client, error) {
	if contract != "" && !common.IsHexAddress(contract) {
		return nil, fmt.Errorf("dial ledger %s: contract %q is not an address", rpcURL, contract)
	}
	eth, err := ethclient.DialContext(ctx, rpcURL)
	if err != nil {
		return nil, fmt.Errorf("dial ledger %s: %w", rpcURL, err)
	}
	chainID, err := eth.ChainID(ctx)
	if err != nil {
		eth.Close()
		return nil, fmt.Errorf("dial ledger %s: chain id: %w", rpcURL, err)
	}
	c := &Client{settlement: newSettlement(eth, key, chainID, slog.Default(), dialPollMax)}
	if contract == "" {
		addr, err := c.deploy(ctx, c.from)
		if err != nil {
			eth.Close()
			return nil, fmt.Errorf("dial ledger %s: %w", rpcURL, err)
		}
		slog.Info("ledger: deployed a new settlement contract; configure it for later runs", "address", addr, "chainId", chainID)
		return c, nil
	}
	if err := c.bindTo(ctx, common.HexToAddress(contract)); err != nil {
		eth.Close()
		return nil, fmt.Errorf("dial ledger %s: %w", rpcURL, err)
	}
	return c, nil
}

// Deploy deploys a new Settlement contract on the chain at rpcURL, signed by
// the admin key in adminKeyFile, with clearingHouse as the account that
// commits batches, and returns its address once mined.
func Deploy(ctx context.Context, rpcURL string, adminKeyFile string, clearingHouse common.Address) (common.Address, error) {
	key, err := readKeyFile(adminKeyFile)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy on %s: %w", rpcURL, err)
	}
	eth, err := ethclient.DialContext(ctx, rpcURL)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy on %s: %w", rpcURL, err)
	}
	defer eth.Close()
	chainID, err := eth.ChainID(ctx)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy on %s: chain id: %w", rpcURL, err)
	}
	s := newSettlement(eth, key, chainID, slog.Default(), dialPollMax)
	addr, err := s.deploy(ctx, clearingHouse)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy on %s: %w", rpcURL, err)
	}
	return addr, nil
}

// Signer returns the address the client signs commits with.
func (c *Client) Signer() common.Address { return c.from }

// NextBatchID implements Ledger.
func (c *Client) NextBatchID(ctx context.Context) (uint64, error) {
	if c.closed.Load() {
		return 0, ErrClosed
	}
	return c.nextBatchID(ctx)
}

// CommitBatch implements Ledger. It returns once the transaction is in a block
// (one confirmation); on chains that can reorg, callers wanting finality should
// re-read the batch later.
func (c *Client) CommitBatch(ctx context.Context, b Batch) (Receipt, error) {
	if c.closed.Load() {
		return Receipt{}, fmt.Errorf("commit batch %d: %w", b.ID, ErrClosed)
	}
	return c.commitBatch(ctx, b)
}

// Batch implements Ledger. The per-operator amounts come from the committing
// block's logs, so the node must still serve logs for that block.
func (c *Client) Batch(ctx context.Context, id uint64) (Batch, error) {
	if c.closed.Load() {
		return Batch{}, fmt.Errorf("read batch %d: %w", id, ErrClosed)
	}
	return c.batch(ctx, id)
}

// VerifyInclusion implements Ledger.
func (c *Client) VerifyInclusion(ctx context.Context, batchID uint64, value [32]byte, proof [][32]byte) (bool, error) {
	if c.closed.Load() {
		return false, fmt.Errorf("verify inclusion in batch %d: %w", batchID, ErrClosed)
	}
	return c.verifyInclusion(ctx, batchID, value, proof)
}

// ContractAddress implements Ledger.
func (c *Client) ContractAddress() common.Address { return c.address }

// Close closes the RPC connection. It waits for an in-flight commit, which on a
// remote chain can take a slot or more: cancel the commit's context to stop it
// sooner. Later calls fail with ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	c.eth.Close()
	return nil
}
