package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// newClearingAdminCmds are `faregate clearing`'s admin subcommands: the
// settlement API's tokens, the rider-support desk's pseudonym lookup and
// the deny list and concession enrolments. None of them writes clearing's
// store, so they work beside a running clearing house (deny list and enrol
// list read a stopped one's store).
func newClearingAdminCmds() []*cobra.Command {
	return []*cobra.Command{newTokenCmd(), newRiderIDCmd(), newDenyCmd(), newEnrolCmd()}
}

// tokenFileFlags locate the settlement API's token file.
type tokenFileFlags struct {
	dataDir, file string
}

func (f *tokenFileFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data", "", "clearing's data directory (its token file is <data>/"+clearing.APITokenFile+"), or a kept simulation's (its clearing's); required, unless --api-tokens")
	cmd.Flags().StringVar(&f.file, "api-tokens", "", "token file, if clearing runs with --api-tokens (instead of --data)")
}

func (f *tokenFileFlags) path() (string, error) {
	switch {
	case f.file != "" && f.dataDir != "":
		return "", usageErr("give --data DIR or --api-tokens FILE, not both")
	case f.file != "":
		return f.file, nil
	case f.dataDir != "":
		// A kept simulation's top dir: its clearing's token file, the one
		// `clearing --data RUN` reads.
		dir, err := clearingDir(f.dataDir)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, clearing.APITokenFile), nil
	}
	return "", usageErr("--data DIR (clearing's data directory) is required")
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke the settlement API's bearer tokens (one per party; stored as hashes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newTokenIssueCmd(), newTokenListCmd(), newTokenRevokeCmd())
	return cmd
}

func newTokenIssueCmd() *cobra.Command {
	var (
		tf                            tokenFileFlags
		role, operator, name, regFile string
		ttl                           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a token for an operator, an auditor or a desk; it is printed once and only its hash is kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := tf.path()
			if err != nil {
				return err
			}
			if role == "" {
				return usageErr("--role is required: operator, auditor, concessions, payments, faces, fares or metrics")
			}
			r, err := clearing.ParseRole(role)
			if err != nil {
				return usageErrorf("--role: %w", err)
			}
			switch {
			case r == clearing.RoleOperator && operator == "":
				return usageErr("--role operator needs --operator ID (the operator the token may see)")
			case r != clearing.RoleOperator && operator != "":
				return usageErrorf("--role %s is bound to no operator: drop --operator", r)
			}
			if r == clearing.RoleOperator {
				if err := fare.ValidateID(operator); err != nil {
					return usageErrorf("--operator %q: %w", operator, err)
				}
			}
			if name == "" {
				return usageErr("--name is required: who the token is for (e.g. metro-reconciliation); revoke takes it")
			}
			if err := clearing.ValidateTokenName(name); err != nil {
				return usageErrorf("--name: %w", err)
			}
			if ttl < 0 || (ttl > 0 && ttl < time.Minute) {
				return usageErrorf("--ttl %s: want a minute or more, or 0 for a token that never expires", ttl)
			}
			if regFile == "" && tf.dataDir != "" && r == clearing.RoleOperator {
				// A kept simulation's run names its registry.
				if kr, err := findKeptRun(tf.dataDir); err == nil && kr != nil && kr.man.Registry != "" {
					regFile = kr.path(kr.man.Registry)
				}
			}
			if regFile != "" {
				reg, err := loadRegistry("--registry", regFile)
				if err != nil {
					return fmt.Errorf("--registry: %w", err)
				}
				if _, ok := reg.Operator(operator); r == clearing.RoleOperator && !ok {
					return usageErrorf("--operator %q is not in the registry %s (operators: %s)", operator, regFile, strings.Join(reg.OperatorIDs(), ", "))
				}
			}
			if tf.dataDir != "" {
				dir := filepath.Dir(path)
				if !clearing.HasStore(clearing.StoreDir(dir)) {
					// Tokens may be issued before clearing first starts,
					// but a mistyped --data would hold one nothing reads
					// (an outside test): said.
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s holds no clearing store yet: only a clearing started with --data %s will read this token\n", dir, tf.dataDir)
				}
				if _, err := fare.PrivateDir(dir); err != nil {
					return fmt.Errorf("--data: %w", err)
				}
			}
			ts, err := loadTokenStore(path)
			if err != nil {
				return err
			}
			var expires time.Time
			if ttl > 0 {
				expires = time.Now().Add(ttl)
			}
			token, err := ts.IssueUntil(r, operator, name, expires)
			if err != nil {
				return err
			}
			who := string(r)
			if operator != "" {
				who += " " + operator
			}
			if !expires.IsZero() {
				who += ", until " + expires.UTC().Truncate(time.Second).Format(time.RFC3339)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "issued settlement API token %q (%s) in %s.\n"+
				"It is shown only this once (clearing keeps only its sha256): hand it to its holder now.\n"+
				"Use it as: Authorization: Bearer <token>\n", name, who, path)
			fmt.Fprintln(cmd.OutOrStdout(), token)
			return nil
		},
	}
	tf.register(cmd)
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", 90*24*time.Hour, "how long the token is accepted (0: until revoked); issue a new one before it ends")
	f.StringVar(&role, "role", "", "operator (sees its own operator's data), auditor (sees everything, read-only), concessions (enrols riders into rider categories), payments (charges riders' debts), faces (enrols and erases face subjects), fares (schedules fare feed versions) or metrics (scrapes /metrics)")
	f.StringVar(&operator, "operator", "", "operator id an operator token is bound to")
	f.StringVar(&name, "name", "", "unique name of the token (who holds it); revoke takes it")
	f.StringVar(&regFile, "registry", "", "registry JSON file to check --operator against (optional; clearing refuses tokens of operators it does not list)")
	return cmd
}

func newTokenListCmd() *cobra.Command {
	var tf tokenFileFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the issued tokens: name, role, operator, created (the tokens themselves are not stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := tf.path()
			if err != nil {
				return err
			}
			// A mistyped data dir would list "no tokens" as if it were
			// clearing's: the directory must be there.
			if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
				return fmt.Errorf("no directory %s for the token file (is --data clearing's data directory?)", filepath.Dir(path))
			}
			ts, err := loadTokenStore(path)
			if err != nil {
				return err
			}
			list, err := ts.List()
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no tokens in %s: the settlement API refuses every request but /healthz\n", path)
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tROLE\tOPERATOR\tCREATED\tEXPIRES")
			for _, t := range list {
				op := t.Operator
				if op == "" {
					op = "-"
				}
				expires := "never"
				switch {
				case t.Expires.IsZero():
				case !time.Now().Before(t.Expires):
					expires = t.Expires.UTC().Format(time.RFC3339) + " (expired)"
				default:
					expires = t.Expires.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, op, t.Created.UTC().Format(time.RFC3339), expires)
			}
			return w.Flush()
		},
	}
	tf.register(cmd)
	return cmd
}

func newTokenRevokeCmd() *cobra.Command {
	var (
		tf   tokenFileFlags
		name string
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a token by name; a running clearing refuses it from its next request on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := tf.path()
			if err != nil {
				return err
			}
			if name == "" {
				return usageErr("--name is required: the token to revoke (see `faregate clearing token list`)")
			}
			ts, err := loadTokenStore(path)
			if err != nil {
				return err
			}
			if err := ts.Revoke(name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked settlement API token %q in %s\n", name, path)
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringVar(&name, "name", "", "name of the token to revoke")
	return cmd
}

func newRiderIDCmd() *cobra.Command {
	var dataDir, keyFile, media, token string
	cmd := &cobra.Command{
		Use:   "rider-id",
		Short: "Print the pseudonymous journal account of the rider behind a card token or face subject id",
		Long: `rider-id maps a rider's card token or face subject id to the pseudonymous
account the journal and the settlement API use (passenger/<media>/0x...). It
needs clearing's rider key (<data>/` + clearing.RiderKeyFile + `): a rider-support desk
holds a copy of it. Only a holder of the key can make this mapping.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case keyFile != "" && dataDir != "":
				return usageErr("give --data DIR or --rider-key FILE, not both")
			case keyFile == "" && dataDir == "":
				return usageErr("--data DIR (clearing's data directory, holding " + clearing.RiderKeyFile + ") is required")
			case keyFile == "":
				dir, err := clearingDir(dataDir)
				if err != nil {
					return err
				}
				keyFile = filepath.Join(dir, clearing.RiderKeyFile)
			}
			var m fare.MediaKind
			switch media {
			case "card":
				m = fare.Card
			case "face":
				m = fare.Face
			case "":
				return usageErr("--media is required: card or face")
			default:
				return usageErrorf("--media %q: want card or face", media)
			}
			if token == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read --token from stdin: %w", err)
				}
				token = strings.TrimRight(line, "\r\n")
			}
			switch {
			case token == "":
				return usageErr("--token is required: the card token or face subject id (- reads it from stdin)")
			case len(token) > fare.MaxTokenLen || !utf8.ValidString(token):
				return usageErrorf("--token: a media token is 1 to %d bytes of UTF-8", fare.MaxTokenLen)
			}
			key, err := readRiderKey(keyFile)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), clearing.RiderAccount(key, m, token))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "clearing's data directory (its rider key is <data>/"+clearing.RiderKeyFile+"; required)")
	f.StringVar(&keyFile, "rider-key", "", "a copy of clearing's rider key file (instead of --data)")
	f.StringVar(&media, "media", "", "card or face")
	f.StringVar(&token, "token", "", "the card token or face subject id (- reads it from stdin, keeping it out of shell history)")
	return cmd
}

// readRiderKey reads clearing's rider key without ever creating one: a new
// key would map every rider to an account the journal does not have.
func readRiderKey(path string) ([]byte, error) {
	b, err := readInputFile("rider key", path, maxKeyFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no rider key at %s: clearing creates %s in its data directory on first start; use that directory's (or a copy of its key with --rider-key)", path, clearing.RiderKeyFile)
	}
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"))
	if err != nil || len(key) != clearing.RiderKeySize {
		return nil, fmt.Errorf("rider key %s: want %d hex-encoded bytes", path, clearing.RiderKeySize)
	}
	return key, nil
}
