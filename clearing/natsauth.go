package clearing

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/faregate/faregate/fare"
)

// NATS access follows the on-chain terminal registry. Each registered,
// unrevoked terminal is one NKey user (fare.NATSUserKey of its registered
// event key) allowed only its own subjects (fare.TerminalPermissions);
// clearing is one more user with full access. There is no anonymous user.
//
// Users live in separate accounts. Clearing and every stream and bucket are
// in ClearingAccount; the terminals in TerminalsAccount, which has no
// JetStream of its own. The two exchange only what a terminal's part needs:
// its events, confirmation and feed requests and its feeds' flow-control
// answers flow into clearing's account, confirmations and its inbox's
// deliveries (answers, feeds) flow back. All are streams: no JetStream API
// is lent (clearing makes the feeds' consumers, gatefeeds.go), and clearing
// answers only into the asking terminal's inbox, so no reply subject a
// terminal names can make anything write into a bucket or an event subject.
//
// The verifiers are in accounts of their own too, one for each set of
// partitions a verifier user is admitted to (VerifierAccount), without
// JetStream; clearing's account lends each the services of its partitions
// only: its verify consumers' info, next-message requests and acks, the
// verified subjects and the partition's quarantine subject. A verifier must make requests of
// JetStream (a fetch is one), and nats-server does not check a request's
// reply subject against the publisher's permissions: in clearing's account
// the answer to a fetch, sent to a reply subject the verifier named, was a
// request of JetStream's API from that account (an outside review deleted
// another partition's consumer and the deny-list bucket with it). Across
// a service import the answer goes back into the verifier's own account,
// where the only subjects that lead anywhere are the ones it may publish
// to anyway.

// The NATS accounts of clearing's servers.
const (
	// ClearingAccount holds clearing's user and every stream and bucket.
	ClearingAccount = "FAREGATE"
	// TerminalsAccount holds the terminals' users, without JetStream.
	TerminalsAccount = "FAREGATE_TERMINALS"
)

// NATSUsers returns the nats-server users for the registry's active
// terminals, clearing's own user (its public NKey) and the verifiers' users
// (VerifierPermissions; see partitions.go), each naming its account
// (ClearingAccount or TerminalsAccount; NATSAccounts renders them).
// Terminals whose registered key cannot carry a NATS identity are skipped
// and returned in skipped (they could not sign events either).
func NATSUsers(terms []RegisteredTerminal, clearingUser string, v Verifiers) (users []*server.NkeyUser, skipped []string) {
	own := server.NewAccount(ClearingAccount)
	users = append(users, &server.NkeyUser{Nkey: clearingUser, Account: own})
	verifierAccounts := map[string]*server.Account{}
	for _, u := range verifierUsers(v.Keys) {
		name := VerifierAccount(verifierPartitionsOf(v.Keys, u.Nkey))
		if verifierAccounts[name] == nil {
			verifierAccounts[name] = server.NewAccount(name)
		}
		u.Account = verifierAccounts[name]
		users = append(users, u)
	}
	terminals := server.NewAccount(TerminalsAccount)
	for _, t := range terms {
		if t.Revoked() {
			continue
		}
		u, err := fare.NATSUserKey(t.PublicKey, t.ID)
		if err != nil {
			skipped = append(skipped, t.ID)
			continue
		}
		pub, sub := fare.TerminalPermissions(t.Operator, t.ID)
		users = append(users, &server.NkeyUser{Nkey: u, Account: terminals, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: sub},
		}})
	}
	return users, skipped
}

// ErrVerifierKeyTaken is returned when a verifier's NATS user is also
// clearing's or a terminal's: one user cannot be in two accounts.
var ErrVerifierKeyTaken = errors.New("clearing: a verifier key is another party's NATS user")

// CheckVerifierKeys refuses verifier keys that are clearing's own NATS
// user or a registered terminal's (a key pasted into the wrong flag): the
// server would refuse the configuration with "Duplicate nkey", naming
// neither.
func CheckVerifierKeys(terms []RegisteredTerminal, clearingUser string, v Verifiers) error {
	for _, k := range v.Keys {
		if k.Key == clearingUser {
			return fmt.Errorf("%w: --verifier-key %d=%s is clearing's own NATS user; give each verifier a key of its own (faregate clearing verifier-key FILE)", ErrVerifierKeyTaken, k.Partition, k.Key)
		}
		for _, t := range terms {
			if u, err := fare.NATSUserKey(t.PublicKey, t.ID); err == nil && u == k.Key {
				return fmt.Errorf("%w: --verifier-key %d=%s is terminal %s's NATS user; give each verifier a key of its own (faregate clearing verifier-key FILE)", ErrVerifierKeyTaken, k.Partition, k.Key, t.ID)
			}
		}
	}
	return nil
}

// Verifiers are the verifier processes' NATS users (their public NKeys,
// each admitted to its partitions) and the number of partitions
// (partitions.go); zero: none.
type Verifiers struct {
	Keys       []VerifierKey
	Partitions int
}

// NATSServerConfig renders the accounts block (and limits) of a nats-server
// configuration file for an external server or cluster: the same accounts,
// users and permissions the embedded server builds. Regenerate it and
// reload the server (nats-server --signal reload) after registry changes.
func NATSServerConfig(terms []RegisteredTerminal, clearingUser string, v Verifiers) string {
	users, skipped := NATSUsers(terms, clearingUser, v)
	var b strings.Builder
	b.WriteString("# Generated by `faregate nats config` from the on-chain terminal registry.\n")
	b.WriteString("# Each terminal's NKey is derived from its registered event key (see README).\n")
	for _, id := range skipped {
		fmt.Fprintf(&b, "# skipped terminal %s: its registered key is not a curve point\n", id)
	}
	fmt.Fprintf(&b, "max_payload: %d\n", MaxPayload)
	// The embedded server's bounds (natsserver.go), which an outside red
	// team's stolen terminal key grew an external server past without:
	// 928 MB in 37 s of connections closed with long subscriptions.
	fmt.Fprintf(&b, "max_subscriptions: %d\nmax_control_line: %d\nmax_closed_clients: %d\n", natsMaxSubs, natsMaxControlLine, natsMaxClosed)
	b.WriteString(NATSAccounts(users, v.Keys, 0))
	return b.String()
}

// NATSAccounts renders the accounts block of users (as NATSUsers returns
// them): clearing's account with JetStream and its users, the terminals'
// with theirs, and what each lends the other. terminalConns, when above 0,
// bounds the terminals' connections together, so that terminals cannot
// take the connections clearing and its verifiers need.
func NATSAccounts(users []*server.NkeyUser, verifiers []VerifierKey, terminalConns int) string {
	var b strings.Builder
	userLine := func(u *server.NkeyUser) {
		if u.Permissions == nil {
			fmt.Fprintf(&b, "      { nkey: %q }  # clearing\n", u.Nkey)
			return
		}
		if ps := verifierPartitionsOf(verifiers, u.Nkey); len(ps) > 0 {
			fmt.Fprintf(&b, "      # a verifier of partition(s) %s\n", strings.Trim(fmt.Sprint(ps), "[]"))
		}
		fmt.Fprintf(&b, "      { nkey: %q, permissions: { publish: { allow: %s }, subscribe: { allow: %s } } }\n",
			u.Nkey, quoteList(u.Permissions.Publish.Allow), quoteList(u.Permissions.Subscribe.Allow))
	}
	account := func(name string) {
		for _, u := range users {
			in := ClearingAccount // a user naming none: clearing's, as its own
			if u.Account != nil {
				in = u.Account.Name
			}
			if in == name {
				userLine(u)
			}
		}
	}
	// The verifiers' accounts, and the partitions each is admitted to.
	var vaccts []string
	for _, u := range users {
		if u.Account != nil && strings.HasPrefix(u.Account.Name, verifierAccountPrefix) && !slices.Contains(vaccts, u.Account.Name) {
			vaccts = append(vaccts, u.Account.Name)
		}
	}
	slices.Sort(vaccts)
	lentTo := map[int][]string{} // partition: the verifier accounts lent its services
	var lent []int
	for _, a := range vaccts {
		for _, p := range verifierAccountPartitions(a) {
			if lentTo[p] == nil {
				lent = append(lent, p)
			}
			lentTo[p] = append(lentTo[p], a)
		}
	}
	slices.Sort(lent)
	fmt.Fprintf(&b, "accounts {\n  %s {\n    jetstream: enabled\n    users = [\n", ClearingAccount)
	account(ClearingAccount)
	b.WriteString("    ]\n    exports = [\n")
	for _, s := range terminalInbound {
		fmt.Fprintf(&b, "      { stream: %q, accounts: [%s] }\n", s, TerminalsAccount)
	}
	for _, p := range lent {
		for _, sv := range verifierServices(p) {
			fmt.Fprintf(&b, "      { service: %q%s, accounts: [%s] }\n", sv.subject, sv.exportOpts(), strings.Join(lentTo[p], ", "))
		}
	}
	b.WriteString("    ]\n    imports = [\n")
	for _, s := range terminalOutbound {
		fmt.Fprintf(&b, "      { stream: { account: %s, subject: %q } }\n", TerminalsAccount, s)
	}
	b.WriteString("    ]\n  }\n")
	fmt.Fprintf(&b, "  %s {\n", TerminalsAccount)
	// A gate holds a handful of subscriptions (its confirmations, its
	// inbox, its watches): its connections take at most terminalSubs each
	// (nats-server's account limit is per connection), far below the
	// server's bound for clearing's (an outside red team's stolen key grew
	// clearing's memory by 2.4 GB in 37 s with 600 connections of 4,096).
	fmt.Fprintf(&b, "    limits { max_subscriptions: %d", terminalSubs)
	if terminalConns > 0 {
		fmt.Fprintf(&b, ", max_connections: %d", terminalConns)
	}
	b.WriteString(" }\n")
	b.WriteString("    users = [\n")
	account(TerminalsAccount)
	b.WriteString("    ]\n    exports = [\n")
	for _, s := range terminalOutbound {
		fmt.Fprintf(&b, "      { stream: %q, accounts: [%s] }\n", s, ClearingAccount)
	}
	b.WriteString("    ]\n    imports = [\n")
	for _, s := range terminalInbound {
		fmt.Fprintf(&b, "      { stream: { account: %s, subject: %q } }\n", ClearingAccount, s)
	}
	b.WriteString("    ]\n  }\n")
	for _, a := range vaccts {
		// A verifier process holds one connection and a few subscriptions
		// (its inbox, a fetch's, its publish acks').
		fmt.Fprintf(&b, "  %s {\n    limits { max_connections: %d, max_subscriptions: %d }\n    users = [\n", a, verifierConns, verifierSubs)
		account(a)
		b.WriteString("    ]\n    imports = [\n")
		for _, p := range verifierAccountPartitions(a) {
			for _, sv := range verifierServices(p) {
				to := ""
				if sv.local != "" {
					to = fmt.Sprintf(", to: %q", sv.local)
				}
				fmt.Fprintf(&b, "      { service: { account: %s, subject: %q }%s }\n", ClearingAccount, sv.subject, to)
			}
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// verifierConns bounds the connections of one verifiers' account (the
// verifiers of its partitions, their twins and replacements); verifierSubs
// the subscriptions of each connection.
const (
	verifierConns = 16
	verifierSubs  = 256
)

// verifierAccountPrefix begins the name of a verifiers' account.
const verifierAccountPrefix = "FAREGATE_VERIFY"

// VerifierAccount is the NATS account of the verifier users admitted to
// partitions ps (sorted): FAREGATE_VERIFY_0, FAREGATE_VERIFY_0_2. Users
// admitted to the same partitions share it.
func VerifierAccount(ps []int) string {
	var b strings.Builder
	b.WriteString(verifierAccountPrefix)
	for _, p := range ps {
		b.WriteString("_" + strconv.Itoa(p))
	}
	return b.String()
}

// verifierAccountPartitions reads the partitions back from a verifiers'
// account name (VerifierAccount).
func verifierAccountPartitions(name string) []int {
	var ps []int
	for _, f := range strings.Split(strings.TrimPrefix(name, verifierAccountPrefix), "_") {
		if p, err := strconv.Atoi(f); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// verifierService is a service clearing's account lends the verifiers of a
// partition.
type verifierService struct {
	subject string
	local   string // its subject in the verifier's account, if not subject
	// streamed: the answer is several messages (a fetch's batch).
	streamed bool
	// threshold is how long the server keeps the way back for an answer
	// open: every request with a reply subject holds one until then,
	// answered or not, so it is as short as the answer allows (an outside
	// review's flood of acks with replies, which JetStream never answers,
	// held a million for the 2-minute default: 2.5 GB).
	threshold string
}

// exportOpts renders the export's options after its subject.
func (s verifierService) exportOpts() string {
	opts := fmt.Sprintf(", response_threshold: %q", s.threshold)
	if s.streamed {
		opts = ", response_type: stream" + opts
	}
	return opts
}

// verifierServices are the services of partition p: what its verifiers'
// permissions (VerifierPermissions) let them publish. local is the subject
// in the verifier's account where it is not the service's own: the
// verifier's JetStream client asks under VerifierAPIPrefix (nats-server
// answers $JS.API in every account itself, "JetStream not enabled" in one
// without), and clearing answers its information requests itself.
func verifierServices(p int) []verifierService {
	c := VerifierConsumer(p)
	local := func(op string) string { return VerifierAPIPrefix + "." + op + "." + fare.EventStream + "." + c }
	return []verifierService{
		// Answered by clearing from a copy (verifierapi.go), not lent from
		// JetStream's API.
		{subject: verifierInfoSubject(p), local: local("CONSUMER.INFO"), threshold: "5s"},
		// A fetch is answered at once or within its 200 ms wait (fetchBatch).
		{subject: "$JS.API.CONSUMER.MSG.NEXT." + fare.EventStream + "." + c, local: local("CONSUMER.MSG.NEXT"), streamed: true, threshold: "5s"},
		// The verifier's acks and naks ask for no answer.
		{subject: "$JS.ACK." + fare.EventStream + "." + c + ".>", threshold: "1s"},
		// A forward's publish ack; one later than this is a failed forward,
		// delivered again.
		{subject: "faregate.verified." + strconv.Itoa(p) + ".>", threshold: "5s"},
		{subject: VerifierQuarantineSubject(p), threshold: "5s"},
	}
}

// VerifierQuarantineSubject is where the verifiers of partition p
// quarantine what they refuse: a subject of the partition's own, so that
// clearing counts a verifier's reports only against the terminals of its
// partition (countJunk) and the stream keeps each partition's share.
func VerifierQuarantineSubject(p int) string {
	return fare.QuarantineSubject + "." + strconv.Itoa(p)
}

// VerifierAPIPrefix is where a verifier's account reaches JetStream's API
// (what $JS.API is in clearing's account): the verifier's JetStream client
// is made with it (jetstream.NewWithAPIPrefix).
const VerifierAPIPrefix = "faregate.jsapi"

// terminalSubs bounds the subscriptions of a terminal's connection: a gate
// needs fewer than ten.
const terminalSubs = 64

var (
	// terminalOutbound are the subjects terminals publish into clearing's
	// account: events, confirmation and feed requests, and their feeds'
	// flow-control answers.
	terminalOutbound = append([]string{fare.EventSubjects, fare.WatermarkSubject("*"), fare.GateFeedSubjects}, fare.GateFeedFlowControl("*")...)
	// terminalInbound are the subjects clearing's account sends back:
	// confirmations, and the terminals' inboxes (their feeds' deliveries
	// and the answers to confirmation and feed requests).
	terminalInbound = []string{fare.AppliedSubject("*"), fare.TerminalInboxPrefix("*") + ".>"}
)

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// natsUserKeys returns the users' NKeys, sorted: what changes a reload.
func natsUserKeys(users []*server.NkeyUser) []string {
	ks := make([]string, len(users))
	for i, u := range users {
		ks[i] = u.Nkey
	}
	slices.Sort(ks)
	return ks
}

// clearingIdentity is clearing's own NATS user.
type clearingIdentity struct {
	kp     nkeys.KeyPair
	public string
}

// loadClearingIdentity reads clearing's NATS user seed file; an empty path
// makes a fresh user, enough for the embedded server, which learns it at
// start.
func loadClearingIdentity(path string) (*clearingIdentity, error) {
	return loadNATSIdentity("clearing", path)
}

// loadNATSIdentity reads the NATS user seed of who ("clearing", "verifier")
// from path, or makes a fresh user when path is empty.
func loadNATSIdentity(who, path string) (*clearingIdentity, error) {
	var kp nkeys.KeyPair
	var err error
	if path == "" {
		kp, err = nkeys.CreateUser()
	} else {
		kp, err = ReadNATSUserSeed(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s NATS user: %w", who, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return &clearingIdentity{kp: kp, public: pub}, nil
}

// ReadNATSUserSeed reads an NKey user seed file ("SU…", as nk -gen user or
// nsc write it), naming what is wrong with a file that is not one.
func ReadNATSUserSeed(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("%s is not an NKey seed file (%v); want a user seed starting SU, as nk -gen user writes", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%s holds an NKey seed that is not a user seed (public key %s...); want a user seed starting SU", path, pub[:2])
	}
	return kp, nil
}

func (ci *clearingIdentity) option() nats.Option {
	return nats.Nkey(ci.public, ci.kp.Sign)
}
