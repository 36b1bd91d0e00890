package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// The role commands: what the admin and each operator do on the shared
// ledger. On a real chain each runs with its own key (--eth-rpc, --contract,
// --eth-key); on the embedded dev chain (--data) the chain's data dir holds the
// admin key and the custodial operator keys, picked by --operator.

// chainFlags says which chain and which key a role command uses.
type chainFlags struct {
	data, rpc, contract, key string
	timeout                  time.Duration
}

// roleTimeout is a role command's default --timeout: a dial, a few reads
// and a transaction's wait for its block (ledger.MineWait), with room.
const roleTimeout = 5 * time.Minute

// register adds the chain flags to cmd and bounds its RunE (set before) by
// --timeout: a node that takes the connection and never answers must not
// hang the command.
func (f *chainFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "`DIR` of an embedded chain: DIR/chain (simulate --data, clearing --data) or DIR itself")
	fl.StringVar(&f.rpc, "eth-rpc", "", "Ethereum JSON-RPC endpoint of the shared ledger")
	fl.StringVar(&f.contract, "contract", "", "settlement contract address (with --eth-rpc)")
	fl.StringVar(&f.key, "eth-key", "", "hex secp256k1 key `FILE` to sign with (default on --data: the admin's or --operator's key in the chain dir)")
	fl.DurationVar(&f.timeout, "timeout", roleTimeout, "give up after this long (a node that does not answer)")
	cmd.MarkFlagsMutuallyExclusive("data", "eth-rpc")
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.timeout <= 0 {
			return usageErrorf("--timeout %s: want a positive duration", f.timeout)
		}
		if err := checkInputFile("--eth-key", f.key, maxKeyFileSize); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
		defer cancel()
		cmd.SetContext(ctx)
		err := run(cmd, args)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			node := fare.RedactURL(f.rpc)
			if node == "" {
				node = "the embedded chain in " + f.data
			}
			err = fmt.Errorf("%w (gave up after --timeout %s: %s did not answer in time)", err, f.timeout, node)
		}
		return err
	}
}

// chainDir finds the embedded chain under --data.
func chainDir(data string) (string, error) {
	for _, d := range []string{filepath.Join(data, "chain"), data} {
		if _, err := os.Stat(filepath.Join(d, "ledger.json")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no embedded chain in %s or %s (no ledger.json)", filepath.Join(data, "chain"), data)
}

// roleConn is an open chain and the account a role command acts as.
type roleConn struct {
	led     ledger.Ledger
	emb     custodialChain // nil on --eth-rpc
	account *ledger.Account
	reads   interface {
		Operator(ctx context.Context, id string) (ledger.OperatorInfo, error)
		Terminal(ctx context.Context, id string) (ledger.Terminal, error)
		Reconciliation(ctx context.Context, id uint64, operator string) (ledger.Reconciliation, error)
		Roles(ctx context.Context) (common.Address, common.Address, error)
	}
}

// readOnlyRole opens a chain to read it only: on --eth-rpc no key is needed
// (the embedded chain's clearing-house key is at hand and used as it is).
const readOnlyRole = "clearing (read-only)"

// role names whose key signs on the embedded chain: "admin", "clearing", or
// an operator id; readOnlyRole to read only.
func (f *chainFlags) open(ctx context.Context, role string) (*roleConn, error) {
	if err := checkChainFlags(f.rpc, f.contract); err != nil {
		return nil, err
	}
	switch {
	case f.data == "" && f.rpc == "":
		return nil, usageErr("say which chain: --data DIR (embedded) or --eth-rpc URL --contract ADDR (and --eth-key FILE for a command that signs)")
	case f.rpc != "" && f.key == "" && role == readOnlyRole:
		if f.contract == "" {
			return nil, usageErr("--eth-rpc needs --contract")
		}
		c, err := ledger.DialReadOnly(ctx, f.rpc, f.contract)
		if err != nil {
			return nil, err
		}
		return &roleConn{led: c, reads: c}, nil
	case f.rpc != "":
		if f.contract == "" || f.key == "" {
			return nil, usageErr("--eth-rpc needs --contract and --eth-key")
		}
		c, err := ledger.Dial(ctx, f.rpc, f.key, f.contract)
		if err != nil {
			return nil, err
		}
		return &roleConn{led: c, account: c.KeyAccount(), reads: c}, nil
	}
	dir, err := chainDir(f.data)
	if err != nil {
		return nil, err
	}
	// While clearing (or a simulation) runs the chain, its node holds the
	// dir's lock: act through that node's RPC instead, with the same keys.
	var chain custodialChain
	if a, err := ledger.AttachEmbedded(ctx, dir); err == nil {
		slog.Debug("acting through the running node", "rpc", a.Endpoint(), "dir", dir)
		chain = a
	} else if !errors.Is(err, ledger.ErrNotRunning) {
		return nil, err
	} else if chain, err = ledger.OpenEmbedded(ctx, dir, ledger.WithLogger(slog.Default())); err != nil {
		return nil, err
	}
	rc := &roleConn{led: chain, emb: chain, reads: chain}
	switch {
	case f.key != "":
		key, err := ledger.ReadKeyFile(f.key)
		if err != nil {
			chain.Close()
			return nil, err
		}
		rc.account = chain.Account(key)
	case role == "admin":
		rc.account = chain.Admin()
	case role == "clearing" || role == readOnlyRole:
		rc.account = chain.KeyAccount()
	default:
		keyFile := filepath.Join(dir, "operators", role+".key")
		key, err := ledger.ReadKeyFile(keyFile)
		if err != nil {
			chain.Close()
			return nil, fmt.Errorf("operator %q has no custodial key on this chain (%w); admit it first or pass --eth-key", role, err)
		}
		rc.account = chain.Account(key)
	}
	return rc, nil
}

// openOperator opens the chain as operator: --operator must be an id, and
// the key that signs (--eth-key, or the custodial key on --data) must be
// the account the chain admitted for that operator. The contract would
// take the key's own operator instead, and its answers and registrations
// are final: a mix-up of flags must fail before anything is sent.
// checkOperatorFlag refuses, as a usage error, an --operator that is no
// operator id, or one too long for the ledger's bytes32.
func checkOperatorFlag(operator string) error {
	if err := fare.ValidateID(operator); err != nil {
		return usageErrorf("--operator %q: %v", operator, err)
	}
	if _, err := ledger.EncodeOperator(operator); err != nil {
		return usageErrorf("--operator %q: an operator id on the ledger is 1 to %d printable ASCII characters, this one has %d bytes", operator, ledger.MaxOperatorLen, len(operator))
	}
	return nil
}

func (f *chainFlags) openOperator(ctx context.Context, operator string) (*roleConn, error) {
	if err := checkOperatorFlag(operator); err != nil {
		return nil, err
	}
	rc, err := f.open(ctx, operator)
	if err != nil {
		return nil, err
	}
	info, err := rc.reads.Operator(ctx, operator)
	if err != nil {
		rc.close()
		if errors.Is(err, ledger.ErrUnknownOperator) {
			return nil, fmt.Errorf("--operator %s is not admitted on this chain (faregate ledger admit)", operator)
		}
		return nil, err
	}
	if signer := rc.account.Address(); signer != info.Account {
		rc.close()
		return nil, fmt.Errorf("the signing key's account %s is not operator %s's (%s): give %s's key with --eth-key, or the --operator that key acts for; nothing was sent", signer.Hex(), operator, info.Account.Hex(), operator)
	}
	return rc, nil
}

// custodialChain is the embedded dev chain, opened here or reached through
// the running node (ledger.Embedded, ledger.Attached): the chain and the
// keys its dir holds.
type custodialChain interface {
	ledger.Ledger
	Account(key *ecdsa.PrivateKey) *ledger.Account
	Admin() *ledger.Account
	KeyAccount() *ledger.Account
	OperatorAccount(ctx context.Context, id string) (*ledger.Account, error)
	ReplaceOperatorKey(ctx context.Context, id string) (*ledger.Account, ledger.Receipt, error)
	Operator(ctx context.Context, id string) (ledger.OperatorInfo, error)
	Terminal(ctx context.Context, id string) (ledger.Terminal, error)
	Reconciliation(ctx context.Context, id uint64, operator string) (ledger.Reconciliation, error)
	Roles(ctx context.Context) (common.Address, common.Address, error)
}

func (rc *roleConn) close() { rc.led.Close() }

func printReceipt(w io.Writer, what string, r ledger.Receipt) {
	fmt.Fprintf(w, "%s: tx %s, block %d, gas %d\n", what, common.Hash(r.TxHash).Hex(), r.BlockNumber, r.GasUsed)
}

func newLedgerRoleCmds() []*cobra.Command {
	return []*cobra.Command{
		newLedgerDeployCmd(), newLedgerAdmitCmd(), newLedgerReplaceOperatorCmd(), newLedgerRegisterCmd(), newLedgerRevokeCmd(),
		newLedgerAnswerCmd("acknowledge"), newLedgerAnswerCmd("dispute"), newLedgerStatusCmd(),
		newLedgerKeygenCmd(), newLedgerAddressCmd(),
	}
}

func newLedgerKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make a new Ethereum (secp256k1) key for an --eth-key and print its account address",
		Long: `Writes a new secp256k1 key to FILE (hex, readable by its owner only; an existing
file is never overwritten) and prints its account address: the address an
operator gives the admin for ` + "`ledger admit --account`" + `, or the clearing
house's for ` + "`ledger deploy --clearing-house`" + `. Fund the account with ether on
the chain before it sends anything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErr("--out FILE: where to write the new key")
			}
			addr, err := ledger.NewKeyFile(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key written to %s\naddress %s\n", out, addr.Hex())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "`FILE` to write the new key to (required)")
	return cmd
}

func newLedgerAddressCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "address --eth-key FILE",
		Short: "Print the account address of an --eth-key file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return usageErr("--eth-key FILE: the key whose address to print")
			}
			if err := checkInputFile("--eth-key", keyFile, maxKeyFileSize); err != nil {
				return err
			}
			key, err := ledger.ReadKeyFile(keyFile)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "address %s\n", ledger.KeyAddress(&key.PublicKey).Hex())
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "eth-key", "", "hex secp256k1 key `FILE`")
	return cmd
}

func newLedgerDeployCmd() *cobra.Command {
	var rpc, adminKey, house string
	cmd := &cobra.Command{
		Use:   "deploy --eth-rpc URL --admin-key FILE --clearing-house ADDR",
		Short: "Deploy the settlement contract on a chain: the admin key deploys, the clearing house commits batches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !common.IsHexAddress(house) {
				return fmt.Errorf("--clearing-house %q is not an address", house)
			}
			if err := checkInputFile("--admin-key", adminKey, maxKeyFileSize); err != nil {
				return err
			}
			addr, err := ledger.Deploy(cmd.Context(), rpc, adminKey, common.HexToAddress(house))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), addr.Hex())
			return nil
		},
	}
	cmd.Flags().StringVar(&rpc, "eth-rpc", "", "Ethereum JSON-RPC endpoint")
	cmd.Flags().StringVar(&adminKey, "admin-key", "", "hex key file of the admin (the deployer)")
	cmd.Flags().StringVar(&house, "clearing-house", "", "address of the clearing house's signer")
	for _, n := range []string{"eth-rpc", "admin-key", "clearing-house"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newLedgerAdmitCmd() *cobra.Command {
	var cf chainFlags
	var operator, account string
	cmd := &cobra.Command{
		Use:   "admit --operator ID [--account ADDR]",
		Short: "Admin: admit an operator acting through its own account",
		Long: "Admin: admit an operator acting through its own account. On the embedded chain without " +
			"--account, a custodial key for the operator is created in the chain's data dir and funded.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := cf.open(cmd.Context(), "admin")
			if err != nil {
				return err
			}
			defer rc.close()
			if account == "" {
				if rc.emb == nil || cf.key != "" {
					return usageErr("--account is required except for custodial operators on the embedded chain")
				}
				acct, err := rc.emb.OperatorAccount(cmd.Context(), operator)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "operator %s admitted, custodial account %s\n", operator, acct.Address().Hex())
				return nil
			}
			if !common.IsHexAddress(account) {
				return fmt.Errorf("--account %q is not an address", account)
			}
			r, err := rc.account.AdmitOperator(cmd.Context(), operator, common.HexToAddress(account))
			if err != nil {
				return err
			}
			printReceipt(cmd.OutOrStdout(), "admitted "+operator, r)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&operator, "operator", "", "operator id")
	cmd.Flags().StringVar(&account, "account", "", "the operator's account address")
	_ = cmd.MarkFlagRequired("operator")
	return cmd
}

func newLedgerReplaceOperatorCmd() *cobra.Command {
	var cf chainFlags
	var operator, account string
	cmd := &cobra.Command{
		Use:   "replace-operator --operator ID (--account ADDR | --data DIR)",
		Short: "Admin: move an operator to a new account (its key lost or stolen)",
		Long: "Admin: move an admitted operator to a new account, when its key is lost or stolen. From then on only " +
			"the new account registers and revokes the operator's terminals and answers batches for it; the old one " +
			"acts for no operator. The operator's terminals, balance and answers stay as they are. The new account " +
			"may be neither the admin's nor the clearing house's, nor another operator's. On a chain given by " +
			"--eth-rpc, --account is the operator's new account (fund it with ether before it sends anything). On " +
			"the embedded chain (--data), where the chain's data dir holds the operators' keys, a new key is made " +
			"there in place of the old (kept beside it as KEY.replaced-TIME) and its account funded; no --account.",
		Example: "  faregate ledger replace-operator --data data/run1 --operator metro\n" +
			"  faregate ledger keygen --out metro-2.key   # on the operator's side: prints the new account\n" +
			"  faregate ledger replace-operator --eth-rpc URL --contract 0x... --eth-key admin.key --operator metro --account 0x...",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The embedded chain's own admin holds the operators' keys; with
			// --eth-rpc, or an --eth-key of its own, the new account is given.
			custodial := cf.rpc == "" && cf.key == ""
			switch {
			case custodial && account != "":
				return usageErrorf("--account: on the embedded chain (--data) the operators' keys are kept in its data dir; leave --account out, and a new key is made there")
			case !custodial && !common.IsHexAddress(account):
				return usageErrorf("--account %q is not an address (0x and 40 hex digits): the operator's new account, needed with --eth-rpc or --eth-key", account)
			}
			rc, err := cf.open(cmd.Context(), "admin")
			if err != nil {
				return err
			}
			defer rc.close()
			if custodial {
				acct, r, err := rc.emb.ReplaceOperatorKey(cmd.Context(), operator)
				if err != nil {
					return err
				}
				what := fmt.Sprintf("operator %s moved to a new custodial account %s (its key in the chain's data dir, the old one kept beside it)", operator, acct.Address().Hex())
				if r.TxHash == (common.Hash{}) {
					fmt.Fprintln(cmd.OutOrStdout(), what+": the move was sent by an earlier run")
					return nil
				}
				printReceipt(cmd.OutOrStdout(), what, r)
				return nil
			}
			r, err := rc.account.ReplaceOperatorAccount(cmd.Context(), operator, common.HexToAddress(account))
			if err != nil {
				return err
			}
			printReceipt(cmd.OutOrStdout(), fmt.Sprintf("operator %s moved to account %s", operator, common.HexToAddress(account).Hex()), r)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&operator, "operator", "", "operator id")
	cmd.Flags().StringVar(&account, "account", "", "the operator's new account address (with --eth-rpc)")
	_ = cmd.MarkFlagRequired("operator")
	return cmd
}

// parsePublicKey reads an ed25519 public key as the registry file holds it
// (0x hex, or the base64 of registry files written before 2026-12-02), or
// in bare hex.
func parsePublicKey(s string) ([32]byte, error) {
	var out [32]byte
	s = strings.TrimSpace(s)
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		b, err = clearing.DecodePublicKey(s)
	}
	if err != nil || len(b) != ed25519.PublicKeySize {
		return out, fmt.Errorf("public key %q: want %d bytes in 0x hex (or base64)", s, ed25519.PublicKeySize)
	}
	copy(out[:], b)
	return out, nil
}

func newLedgerRegisterCmd() *cobra.Command {
	var cf chainFlags
	var operator, registry, id, stop, pub, keyProof string
	cmd := &cobra.Command{
		Use:   "register-terminals --operator ID (--registry FILE | --terminal ID --stop STOP --public-key KEY --key-proof PROOF)",
		Short: "Operator: register terminals' signing keys on the shared ledger",
		Long: "Operator: register terminals' signing keys. With --registry, every terminal of --operator in the " +
			"file that the chain does not hold yet; else the one terminal given. Registrations are final: a " +
			"terminal id is never reused, even after revocation. Each registration carries the terminal key's " +
			"signature of it (key_proof, as `faregate terminal keygen` prints it): clearing follows no " +
			"registration without one, so no operator can register another's key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ts []ledger.TerminalRegistration
			switch {
			case registry != "" && id != "":
				return errors.New("give --registry or --terminal, not both")
			case registry != "":
				reg, err := loadRegistry("--registry", registry)
				if err != nil {
					return err
				}
				for _, t := range reg.Terminals {
					if t.Operator != operator {
						continue
					}
					// LoadRegistry checked the proofs that are there.
					if len(t.KeyProof) == 0 {
						return fmt.Errorf("--registry %s: terminal %s has no key_proof (the terminal key's signature of its registration; clearing follows no registration without one): `faregate terminal keygen --key FILE --id %s --operator %s --stop %s` prints the entry with it; nothing was sent",
							registry, t.ID, t.ID, t.Operator, t.Stop)
					}
					var pk [32]byte
					copy(pk[:], t.PublicKey)
					ts = append(ts, ledger.TerminalRegistration{ID: t.ID, Stop: t.Stop, PublicKey: pk, KeyProof: t.KeyProof})
				}
			case id != "":
				if stop == "" || pub == "" || keyProof == "" {
					return usageErr("--terminal needs --stop, --public-key and --key-proof")
				}
				pk, err := parsePublicKey(pub)
				if err != nil {
					return asUsage(err)
				}
				proof, err := fare.ParseKeyProof(strings.TrimSpace(keyProof))
				if err != nil {
					return usageErrorf("--key-proof: %v", err)
				}
				// The contract checks only that the id is not empty and the
				// proof 64 bytes; ids become NATS subjects and permissions,
				// and clearing follows only a registration the key signed.
				if err := clearing.CheckRegistration(id, operator, stop, pk[:], proof); err != nil {
					return usageErrorf("--terminal %s: %v", id, err)
				}
				ts = []ledger.TerminalRegistration{{ID: id, Stop: stop, PublicKey: pk, KeyProof: proof}}
			default:
				return usageErr("give --registry FILE or --terminal ID --stop STOP --public-key KEY --key-proof PROOF")
			}
			rc, err := cf.openOperator(cmd.Context(), operator)
			if err != nil {
				return err
			}
			defer rc.close()
			// One key, one terminal: clearing would not follow a second id
			// under a key the chain holds already.
			held := clearing.NewChainTerminals(rc.led)
			if err := held.Sync(cmd.Context()); err != nil {
				return err
			}
			// Skip what the chain already holds, so a registry file can be
			// re-applied after adding gates.
			var todo []ledger.TerminalRegistration
			for _, t := range ts {
				if other, ok := held.KeyHolder(t.PublicKey); ok && other != t.ID {
					return fmt.Errorf("terminal %s: public key 0x%x is terminal %s's already: one key, one terminal (clearing would not follow it); nothing was sent", t.ID, t.PublicKey[:], other)
				}
				have, err := rc.reads.Terminal(cmd.Context(), t.ID)
				if errors.Is(err, ledger.ErrUnknownTerminal) {
					todo = append(todo, t)
					continue
				}
				if err != nil {
					return err
				}
				// On chain already: the same registration, which clearing
				// follows, or a mistake that registering again cannot mend
				// (registrations are final, ids never reused).
				anew := fmt.Sprintf("register the gate under a new id: `faregate terminal keygen --key FILE --id NEW --operator %s --stop %s` (the same key file keeps the key) and register that entry; nothing was sent", operator, t.Stop)
				switch {
				case have.Operator != operator:
					return fmt.Errorf("terminal id %s is registered to operator %s (ids are first come first served, whoever asks; clearing follows that registration only if its key proof verifies): %s", t.ID, have.Operator, anew)
				case have.PublicKey != t.PublicKey:
					return fmt.Errorf("terminal %s is registered with another key, 0x%x: %s", t.ID, have.PublicKey[:], anew)
				case have.StopHash != crypto.Keccak256Hash([]byte(t.Stop)):
					return fmt.Errorf("terminal %s is registered at another stop than %s (the chain keeps its keccak256 only; `faregate ledger status` names it), and clearing refuses its taps made at %s: %s", t.ID, t.Stop, t.Stop, anew)
				}
				if _, ok := held.Lookup(t.ID); !ok {
					why := "clearing has not read it yet"
					for _, r := range held.Refused() {
						if r.Terminal == t.ID {
							why = r.Why
						}
					}
					return fmt.Errorf("terminal %s is on chain as this entry says, but clearing does not follow that registration (%s): %s", t.ID, why, anew)
				}
			}
			if len(ts) == 0 {
				return fmt.Errorf("--registry %s has no terminal of operator %s: nothing to register", registry, operator)
			}
			rs, err := rc.account.RegisterTerminals(cmd.Context(), todo)
			for i, r := range rs {
				printReceipt(cmd.OutOrStdout(), fmt.Sprintf("registration tx %d", i+1), r)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d terminals registered for %s, %d already on chain\n", len(todo), operator, len(ts)-len(todo))
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&operator, "operator", "", "operator id (whose key signs on the embedded chain)")
	fl.StringVar(&registry, "registry", "", "registry JSON file whose terminals of --operator to register")
	fl.StringVar(&id, "terminal", "", "terminal id")
	fl.StringVar(&stop, "stop", "", "stop the terminal serves")
	fl.StringVar(&pub, "public-key", "", "terminal's ed25519 public key, 0x hex (or base64)")
	fl.StringVar(&keyProof, "key-proof", "", "the terminal key's signature of this registration, 0x hex (the key_proof that faregate terminal keygen prints)")
	_ = cmd.MarkFlagRequired("operator")
	return cmd
}

func newLedgerRevokeCmd() *cobra.Command {
	var cf chainFlags
	var operator, id string
	cmd := &cobra.Command{
		Use:   "revoke-terminal --operator ID --terminal ID",
		Short: "Operator: revoke one of its terminals; clearing quarantines the terminal's later events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := cf.openOperator(cmd.Context(), operator)
			if err != nil {
				return err
			}
			defer rc.close()
			r, err := rc.account.RevokeTerminal(cmd.Context(), id)
			if err != nil {
				return err
			}
			printReceipt(cmd.OutOrStdout(), "revoked "+id, r)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&operator, "operator", "", "operator id (whose key signs on the embedded chain)")
	cmd.Flags().StringVar(&id, "terminal", "", "terminal id")
	_ = cmd.MarkFlagRequired("operator")
	_ = cmd.MarkFlagRequired("terminal")
	return cmd
}

func newLedgerAnswerCmd(verb string) *cobra.Command {
	var cf chainFlags
	var operator, reasonFile string
	var batch uint64
	cmd := &cobra.Command{
		Use:   verb + " --operator ID --batch N",
		Short: "Operator: acknowledge a settlement batch as matching its records (final)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var reason [32]byte
			if verb == "dispute" {
				var err error
				if reason, err = reasonDigest(reasonFile); err != nil {
					return err
				}
			}
			rc, err := cf.openOperator(cmd.Context(), operator)
			if err != nil {
				return err
			}
			defer rc.close()
			var r ledger.Receipt
			if verb == "dispute" {
				r, err = rc.account.DisputeBatch(cmd.Context(), batch, reason)
			} else {
				r, err = rc.account.AcknowledgeBatch(cmd.Context(), batch)
			}
			if errors.Is(err, ledger.ErrAlreadyAnswered) {
				// Say which answer is on record (answers are final).
				if rec, rerr := rc.reads.Reconciliation(cmd.Context(), batch, operator); rerr == nil {
					on := rec.Answer.String()
					if rec.Answer == ledger.Disputed {
						on += fmt.Sprintf(" (reason sha256 0x%x)", rec.ReasonHash)
					}
					return fmt.Errorf("%w: %s's answer to batch %d on record is %s, and answers are final", err, operator, batch, on)
				}
			}
			if err != nil {
				return err
			}
			what := fmt.Sprintf("%s: batch %d %sd", operator, batch, verb)
			if verb == "dispute" {
				what += fmt.Sprintf(" (reason sha256 0x%x)", reason)
			}
			printReceipt(cmd.OutOrStdout(), what, r)
			return nil
		},
	}
	if verb == "dispute" {
		cmd.Use = "dispute --operator ID --batch N --reason FILE"
		cmd.Short = "Operator: dispute a settlement batch; the chain records the sha256 of the reason document (final)"
		cmd.Flags().StringVar(&reasonFile, "reason", "", "reason document; its sha256 goes on chain")
		_ = cmd.MarkFlagRequired("reason")
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&operator, "operator", "", "operator id (whose key signs on the embedded chain)")
	cmd.Flags().Uint64Var(&batch, "batch", 0, "batch id")
	_ = cmd.MarkFlagRequired("operator")
	_ = cmd.MarkFlagRequired("batch")
	return cmd
}

// reasonDigest is the sha256 of a dispute's reason document, read as a
// stream. A document with nothing but white space in it is refused: the
// chain keeps its hash for good, as the only record of why.
func reasonDigest(path string) ([32]byte, error) {
	f, _, err := openInputFile("--reason", path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	var said bool
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if !said && strings.TrimSpace(string(buf[:n])) != "" {
			said = true
		}
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return [32]byte{}, fmt.Errorf("--reason: %w", err)
		}
	}
	if !said {
		return [32]byte{}, usageErrorf("--reason %s is empty or blank (white space only): the chain keeps the sha256 of the document that says why, for good", path)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d, nil
}

func newLedgerStatusCmd() *cobra.Command {
	var cf chainFlags
	var operators []string
	var registry string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the contract's roles, terminals, batches and each operator's balance and answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			for _, op := range operators {
				if err := checkOperatorFlag(op); err != nil {
					return err
				}
			}
			currency, err := statusCurrency(registry, cf.data)
			if err != nil {
				return err
			}
			rc, err := cf.open(ctx, readOnlyRole)
			if err != nil {
				return err
			}
			defer rc.close()
			w := cmd.OutOrStdout()
			admin, house, err := rc.reads.Roles(ctx)
			if err != nil {
				return err
			}
			next, err := rc.led.NextBatchID(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "contract %s\nadmin %s\nclearing house %s\nbatches committed: %d\n",
				rc.led.ContractAddress().Hex(), admin.Hex(), house.Hex(), next-1)
			terms := clearing.NewChainTerminals(rc.led)
			if err := terms.Sync(ctx); err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, op := range operators {
				seen[op] = true
			}
			for _, t := range terms.All() {
				state := "valid"
				if t.Revoked() {
					state = fmt.Sprintf("revoked in block %d", t.RevokedBlock)
				}
				fmt.Fprintf(w, "terminal %s operator %s stop %s registered in block %d, %s\n", t.ID, t.Operator, t.Stop, t.RegisteredBlock, state)
				if !seen[t.Operator] {
					seen[t.Operator] = true
					operators = append(operators, t.Operator)
				}
			}
			// On chain, and never followed: the chain holds more than
			// the terminals above, and says so.
			refused := terms.Refused()
			for i, rr := range refused {
				if i == maxRefusedShown {
					fmt.Fprintf(w, "and %d more registrations NOT FOLLOWED by clearing (the settlement API's /v1/terminals lists them all)\n", len(refused)-i)
					break
				}
				fmt.Fprintf(w, "terminal %q operator %q stop %q key %s registered in block %d, NOT FOLLOWED by clearing: %s\n",
					rr.Terminal, rr.Operator, rr.Stop, rr.PublicKey, rr.Block, rr.Why)
			}
			for _, op := range operators {
				info, err := rc.reads.Operator(ctx, op)
				if err != nil {
					fmt.Fprintf(w, "operator %s: %v\n", op, err)
					continue
				}
				var answers []string
				for id := uint64(1); id < next; id++ {
					r, err := rc.reads.Reconciliation(ctx, id, op)
					if err != nil {
						return err
					}
					if r.Answer != ledger.AnswerNone {
						answers = append(answers, fmt.Sprintf("%d %s", id, r.Answer))
					}
				}
				balance := fmt.Sprintf("%d minor units (give --registry for their currency)", info.Balance)
				if currency != "" {
					balance = moneyTextOf(fare.Amount(info.Balance), currency)
				}
				fmt.Fprintf(w, "operator %s account %s balance %s answers [%s]\n", op, info.Account.Hex(), balance, strings.Join(answers, ", "))
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringSliceVar(&operators, "operator", nil, "operators to show besides those owning terminals")
	cmd.Flags().StringVar(&registry, "registry", "", "`FILE`: the registry clearing runs with, whose currency balances are shown in (default DIR/registry.json with --data, when there is one)")
	return cmd
}

// statusCurrency is the currency `ledger status` shows balances in: the
// registry's given with --registry, else that of DIR/registry.json beside an
// embedded chain (simulate --data keeps one), else "" (unknown).
func statusCurrency(registry, data string) (string, error) {
	if registry == "" && data != "" {
		if p := filepath.Join(data, "registry.json"); fileExists(p) {
			registry = p
		}
	}
	if registry == "" {
		return "", nil
	}
	reg, err := loadRegistry("--registry", registry)
	if err != nil {
		return "", fmt.Errorf("--registry: %w", err)
	}
	return reg.Currency, nil
}
