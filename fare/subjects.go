package fare

import "time"

// NATS subjects and stream names shared by terminals and clearing.
//
// Events go to faregate.events.<operator>.<terminal>: a clearing instance can
// own a partition of the city by filtering on operators (or, later, on a
// terminal-hash token) without terminals changing what they publish.
const (
	// EventStream is the JetStream stream holding signed fare events.
	EventStream = "FAREGATE_EVENTS"
	// EventSubjects is the stream's subject filter.
	EventSubjects = "faregate.events.>"
	// QuarantineStream holds rejected messages with their reasons.
	QuarantineStream = "FAREGATE_QUARANTINE"
	// QuarantineSubject is where clearing publishes rejected messages.
	QuarantineSubject = "faregate.quarantine"
	// HeaderReason carries the quarantine reason on a quarantined message.
	HeaderReason = "Faregate-Reason"
	// HeaderDetail carries a human-readable explanation.
	HeaderDetail = "Faregate-Detail"
)

// EventSubject is the subject a terminal publishes its events on.
func EventSubject(operator, terminal string) string {
	return "faregate.events." + operator + "." + terminal
}

// AppliedSubject is where clearing announces a terminal's signed
// Confirmation: every sequence up to its watermark is durably applied or
// rejected, so the terminal may drop them from its outbox.
func AppliedSubject(terminal string) string { return "faregate.applied." + terminal }

// WatermarkSubject answers a terminal's request for a Confirmation, so a
// terminal that missed an announcement (offline, restarted) can ask. The
// request carries the terminal's own watermark in decimal.
func WatermarkSubject(terminal string) string { return "faregate.watermark." + terminal }

// TerminalInboxPrefix is the inbox prefix of a terminal's NATS connection:
// replies to it (JetStream publish acks, confirmations it asked for) arrive
// under it, and only that terminal may subscribe there.
func TerminalInboxPrefix(terminal string) string { return "_INBOX." + terminal }

// Gate feeds. A terminal follows the gate-list buckets (deny list,
// enrolments) and its own keys of the face bucket through consumers
// clearing makes for it: it asks on GateFeedSubject, naming a delivery
// subject in its own inbox, and clearing (which checks the asker, the
// subject and the rate) makes a push consumer delivering there. Terminals
// are NATS users of an account of their own without JetStream, and reach
// no JetStream API at all: they can make no consumer, read no stream's
// information and have no API answer written anywhere (an outside red
// team filled the deny list's bucket with 1.88 million junk values
// through such answers while terminals shared clearing's account, and
// later grew clearing by 4.2 GB through the API clearing then lent).
const (
	// FeedDeny is the deny list's feed (DenyBucket, every key).
	FeedDeny = "deny"
	// FeedEnrol is the enrolments' feed (EnrolBucket, every key).
	FeedEnrol = "enrol"
	// FeedFace is a terminal's feed of the face bucket (its own keys).
	FeedFace = "face"
	// GateFeedSubjects are the subjects of every terminal's feed requests.
	GateFeedSubjects = "faregate.feed.*.*"
)

// GateFeedConsumer is the name of the consumer clearing makes for
// terminal's feed: one a feed, a new grant replacing it.
func GateFeedConsumer(terminal, feed string) string { return "gatefeed_" + feed + "_" + terminal }

// GateFeedSubject is where terminal asks clearing for feed.
func GateFeedSubject(terminal, feed string) string { return "faregate.feed." + terminal + "." + feed }

// GateFeedStream returns the stream and subject filter of terminal's feed,
// and false for a feed there is no such thing as.
func GateFeedStream(terminal, feed string) (stream, filter string, ok bool) {
	switch feed {
	case FeedDeny:
		return "KV_" + DenyBucket, "$KV." + DenyBucket + ".>", true
	case FeedEnrol:
		return "KV_" + EnrolBucket, "$KV." + EnrolBucket + ".>", true
	case FeedFace:
		return FaceStream, FaceWatchFilter(terminal), true
	}
	return "", "", false
}

// GateFeedRequest is a terminal's request for a feed: the subject, in its
// own inbox (TerminalInboxPrefix), it has subscribed to for the deliveries,
// and, for a terminal that holds a copy, where that copy stands.
type GateFeedRequest struct {
	Deliver string `json:"deliver"`
	// Resume asks for only the values written after the copy's position
	// (a reconnect need not read a large list whole again); clearing
	// grants it only on the same stream, holding that revision, and
	// otherwise grants the values whole (GateFeedGrant.Resumed false).
	Resume *GateFeedPosition `json:"resume,omitempty"`
}

// GateFeedPosition is where a terminal's copy of a feed stands: the
// stream it read, named by the time it was created (a stream made again
// numbers its values anew), and the last revision (stream sequence) it
// has taken, every value written up to it included.
type GateFeedPosition struct {
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
}

// Valid says whether p names a position a feed can resume from.
func (p GateFeedPosition) Valid() bool { return p.Stream != "" && p.Revision > 0 }

// GateFeedGrant is clearing's answer: the consumer made (its deliveries
// carry JetStream's metadata: consecutive consumer sequences, the stream
// sequence as revision, what is still pending), how many values it starts
// with, and how often it sends an idle heartbeat; or why there is none.
type GateFeedGrant struct {
	Consumer    string `json:"consumer,omitempty"`
	Pending     uint64 `json:"pending"`
	HeartbeatMs int64  `json:"heartbeat_ms,omitempty"`
	// Stream is the stream read (its creation time, RFC 3339 in UTC with
	// nanoseconds): what a later request's Resume names.
	Stream string `json:"stream,omitempty"`
	// Resumed says the consumer starts after the request's Resume
	// revision; false: it delivers every value whole.
	Resumed bool `json:"resumed,omitempty"`
	// Head is, for a resumed feed, its head as the bucket held it when
	// granted (a gate list's, or the terminal's face head; signed by
	// clearing: the gate verifies it): the resumed copy must make it, or
	// be read whole.
	Head  []byte `json:"head,omitempty"`
	Error string `json:"error,omitempty"`
}

// GateFeedMovedHeader marks clearing's notice, sent to a feed's previous
// delivery subject, that another request for the same terminal's feed
// moved it elsewhere (its value: when, RFC 3339). A gate asks again only
// after it stopped reading its previous delivery subject, so a gate that
// gets the notice did not make that request: another holder of its key
// did, and now reads the feed in its place.
const GateFeedMovedHeader = "Faregate-Feed-Moved"

// GateFeedFlowControl are the subjects on which terminal answers its
// feeds' flow control (JetStream's replies $JS.FC.<stream>.<consumer>.<id>):
// its own consumers' only, so that what it sends there names it. With
// terminal "*", every terminal's: what the accounts exchange.
func GateFeedFlowControl(terminal string) []string {
	var out []string
	for _, feed := range []string{FeedDeny, FeedEnrol, FeedFace} {
		stream, _, _ := GateFeedStream(terminal, feed)
		if terminal == "*" {
			out = append(out, "$JS.FC."+stream+".>")
		} else {
			out = append(out, "$JS.FC."+stream+"."+GateFeedConsumer(terminal, feed)+".*")
		}
	}
	return out
}

// TerminalPermissions are the subjects a terminal's NATS user may publish to
// and subscribe to: its own event subject, confirmation request and feed
// requests, and its feeds' flow-control answers; its own confirmations and
// inbox (where its feeds deliver and its requests are answered). Nothing
// else: no other terminal's subjects, no JetStream API, no bucket.
func TerminalPermissions(operator, terminal string) (publish, subscribe []string) {
	pub := append([]string{EventSubject(operator, terminal), WatermarkSubject(terminal), GateFeedSubject(terminal, "*")}, GateFeedFlowControl(terminal)...)
	return pub, []string{AppliedSubject(terminal), TerminalInboxPrefix(terminal) + ".>"}
}

// NATSPingInterval and NATSMaxPingsOut are how terminals and clearing find
// a dead NATS connection that was never closed (a frozen node, a cut that
// sends no reset): a ping every 5 s, given up after 3 unanswered, so the
// client reconnects to another node within about 20 s. nats.go's defaults
// (2 min, 2) held a frozen node's connections for about 4 minutes in an
// outside test, and clearing applied nothing meanwhile.
const (
	NATSPingInterval = 5 * time.Second
	NATSMaxPingsOut  = 3
)
