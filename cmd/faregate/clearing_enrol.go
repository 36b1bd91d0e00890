package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
)

// newEnrolCmd is `faregate clearing enrol add|revoke|list`: concession
// enrolments, worked on clearing's data dir like `deny`. A running clearing
// holds its store, so add and revoke queue a request in its data dir
// (clearing.QueueEnrolment, holding the rider's pseudonymous account and the
// medium's gate key, never the token) that it applies within a second; list
// reads a stopped clearing's store (a running one serves
// GET /v1/enrolments/{rider} to concessions and auditor tokens, and takes
// POST /v1/enrolments from concessions tokens).
func newEnrolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enrol",
		Short: "Enrol riders into rider categories (concessions), revoke enrolments, list them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newEnrolAddCmd(), newEnrolRevokeCmd(), newEnrolListCmd())
	return cmd
}

// mediumFlags name a medium by its token, or a rider by its account.
type mediumFlags struct {
	dataDir, media, token, rider string
}

func (f *mediumFlags) add(cmd *cobra.Command, riderToo bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data", "", "clearing's data directory (its rider key is <data>/"+clearing.RiderKeyFile+"; required)")
	fl.StringVar(&f.media, "media", "", "card or face")
	fl.StringVar(&f.token, "token", "", "the card token or face subject id (- reads it from stdin, keeping it out of shell history)")
	if riderToo {
		fl.StringVar(&f.rider, "rider", "", "the rider's pseudonymous account (passenger/card/0x...), instead of --media and --token")
	}
}

// resolve returns the rider's account and, when the token was given, the
// medium's gate key.
func (f *mediumFlags) resolve(cmd *cobra.Command, riderOK bool) (rider string, m fare.MediaKind, key string, err error) {
	if f.dataDir, err = clearingDir(f.dataDir); err != nil {
		return "", 0, "", err
	}
	if f.rider != "" {
		if f.media != "" || f.token != "" {
			return "", 0, "", usageErr("give --rider, or --media and --token, not both")
		}
		m, err := clearing.ParseRiderAccount(f.rider)
		if err != nil {
			return "", 0, "", usageErrorf("--rider: %w", err)
		}
		return f.rider, m, "", nil
	}
	if f.media == "" {
		if riderOK {
			return "", 0, "", usageErr("--media card|face and --token, or --rider, are required")
		}
		return "", 0, "", usageErr("--media is required: card or face")
	}
	if m, err = clearing.ParseMedia(f.media); err != nil {
		return "", 0, "", usageErrorf("--media: %w", err)
	}
	token := f.token
	if token == "-" {
		in := bufio.NewReader(cmd.InOrStdin())
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", 0, "", fmt.Errorf("read --token from stdin: %w", err)
		}
		token = strings.TrimRight(line, "\r\n")
		// One rider a command: a file of tokens piped in must not enrol
		// its first and drop the rest in silence (an outside test's did).
		if rest, _ := in.ReadString('\n'); strings.TrimSpace(rest) != "" {
			return "", 0, "", usageErr("--token -: stdin holds more than one line; it takes one token (run the command once a token)")
		}
	}
	if token == "" {
		return "", 0, "", usageErr("--token is required: the card token or face subject id (- reads it from stdin)")
	}
	if err := fare.CheckDeskToken(token); err != nil {
		return "", 0, "", usageErrorf("--token: %w", err)
	}
	rk, err := readRiderKey(filepath.Join(f.dataDir, clearing.RiderKeyFile))
	if err != nil {
		return "", 0, "", err
	}
	return clearing.RiderAccount(rk, m, token), m, fare.DenyKey(m, token), nil
}

func parseTimeFlag(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErrorf("--%s %q: want an RFC 3339 time such as 2027-12-31T04:00:00+01:00", name, s)
	}
	return t, nil
}

// queueAndWait queues q and waits up to wait for clearing to apply it.
func queueAndWait(cmd *cobra.Command, dataDir string, q clearing.QueuedEnrolment, wait time.Duration) error {
	path, err := clearing.QueueEnrolment(dataDir, q, time.Now())
	if errors.Is(err, clearing.ErrInvalidEnrolment) {
		return asUsage(err) // a date out of range: nothing queued
	}
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	what := "enrolment of " + q.Rider + " into " + q.Category
	if q.Revoke {
		what = "revocation of " + q.Rider + "'s enrolment"
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if b, err := os.ReadFile(path + ".rejected"); err == nil {
			var rej clearing.RejectedEnrolment
			_ = json.Unmarshal(b, &rej)
			return fmt.Errorf("clearing refused the %s: %s (request kept in %s.rejected)", what, rej.Error, path)
		}
		fmt.Fprintf(out, "%s applied by clearing\n", what)
		return nil
	}
	if wait > 0 {
		fmt.Fprintf(out, "%s queued in %s, not applied within %s: clearing applies it when it runs (a running clearing logs why it has not)\n", what, path, wait)
		return nil
	}
	fmt.Fprintf(out, "%s queued in %s; clearing applies it when it runs\n", what, path)
	return nil
}

// documentedRiderCategories are the rider categories Faregate documents
// (the README's examples, the simulated city's feed): what --category and a
// tap line's claimed category are checked against without a feed.
var documentedRiderCategories = []string{"adult", "concession"}

// checkRiderCategory refuses, as a usage error, a category that is not one
// of cats (from where), naming what was given and listing cats, then hint.
func checkRiderCategory(what, category string, cats []string, from, hint string) error {
	if slices.Contains(cats, category) {
		return nil
	}
	return usageErrorf("%s %q: not a rider category of %s (%s)%s", what, category, from, strings.Join(cats, ", "), hint)
}

// enrolCategories are the rider categories `enrol add` accepts: those of
// --feed, else the documented ones (with a hint to give --feed).
func enrolCategories(feedPath string) (cats []string, from, hint string, err error) {
	if feedPath == "" {
		return documentedRiderCategories, "Faregate's documented set", "; give --feed DIR|ZIP, the feed clearing prices with, for its categories", nil
	}
	feed, err := gtfs.LoadPath(feedPath, feedWarnings(os.Stderr))
	if err != nil {
		return nil, "", "", usageErrorf("--feed %s: %w", feedPath, err)
	}
	return feed.RiderCategories(), "the feed " + feedPath, "", nil
}

func newEnrolAddCmd() *cobra.Command {
	var (
		mf                              mediumFlags
		category, from, until, approver string
		feedPath                        string
		wait                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Enrol the rider behind a card or face into a rider category, until a date",
		Long: `Enrol the rider behind a card or face into one of the feed's rider
categories (those of --feed DIR|ZIP, the feed clearing prices with; without
it adult and concession), approved by --approved-by, from --valid-from
(default now) until --valid-until (RFC 3339); an unknown category is refused
at once (exit status 64). Both times move forward to the next start of a fare
day: a fare day is priced for the category of its start. The request is queued in
clearing's data dir (<data>/` + clearing.EnrolRequestsDir + `), holding the rider's
pseudonymous account and the medium's gate key, never its token; a running
clearing applies it within a second and sends it to every gate, a stopped
one at its next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if category != "" { // a flag problem comes before the rider key is read
				cats, catsFrom, hint, err := enrolCategories(feedPath)
				if err != nil {
					return err
				}
				if err := checkRiderCategory("--category", category, cats, catsFrom, hint); err != nil {
					return err
				}
			}
			rider, m, key, err := mf.resolve(cmd, false)
			if err != nil {
				return err
			}
			if category == "" {
				return usageErr("--category is required: one of the feed's rider categories (e.g. concession)")
			}
			if until == "" {
				return usageErr("--valid-until is required: until when the enrolment holds (RFC 3339)")
			}
			if approver == "" {
				return usageErr("--approved-by is required: who approved the enrolment")
			}
			vf, err := parseTimeFlag("valid-from", from)
			if err != nil {
				return err
			}
			vu, err := parseTimeFlag("valid-until", until)
			if err != nil {
				return err
			}
			return queueAndWait(cmd, mf.dataDir, clearing.QueuedEnrolment{Rider: rider, Media: m.String(), Key: key, Category: category,
				ApprovedBy: approver, ValidFrom: vf, ValidUntil: vu}, wait)
		},
	}
	mf.add(cmd, false)
	f := cmd.Flags()
	f.StringVar(&category, "category", "", "the rider category (a rider_category_id of clearing's feed)")
	f.StringVar(&feedPath, "feed", "", "the GTFS feed `DIR|ZIP` clearing prices with: --category must be one of its rider categories (default: "+strings.Join(documentedRiderCategories, ", ")+")")
	f.StringVar(&from, "valid-from", "", "when the enrolment starts, RFC 3339 (default now; never in the past)")
	f.StringVar(&until, "valid-until", "", "until when it holds, RFC 3339")
	f.StringVar(&approver, "approved-by", "", "who approved it (kept with the record)")
	f.DurationVar(&wait, "wait", 5*time.Second, "how long to wait for a running clearing to apply it (0: do not wait)")
	return cmd
}

func newEnrolRevokeCmd() *cobra.Command {
	var (
		mf             mediumFlags
		from, approver string
		wait           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a rider's enrolment from the next fare day (a record of its own; the history stays)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rider, m, key, err := mf.resolve(cmd, true)
			if err != nil {
				return err
			}
			if approver == "" {
				return usageErr("--approved-by is required: who approved the revocation")
			}
			vf, err := parseTimeFlag("valid-from", from)
			if err != nil {
				return err
			}
			q := clearing.QueuedEnrolment{Rider: rider, Key: key, Revoke: true, ApprovedBy: approver, ValidFrom: vf}
			if key != "" {
				q.Media = m.String()
			}
			return queueAndWait(cmd, mf.dataDir, q, wait)
		},
	}
	mf.add(cmd, true)
	f := cmd.Flags()
	f.StringVar(&from, "valid-from", "", "when the revocation takes effect, RFC 3339 (default now; never in the past)")
	f.StringVar(&approver, "approved-by", "", "who approved it (kept with the record)")
	f.DurationVar(&wait, "wait", 5*time.Second, "how long to wait for a running clearing to apply it (0: do not wait)")
	return cmd
}

func newEnrolListCmd() *cobra.Command {
	var (
		mf       mediumFlags
		feedPath string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a stopped clearing's enrolments: one rider's history, or every rider's latest record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rider := ""
			var err error
			if mf.rider != "" || mf.media != "" || mf.token != "" {
				if rider, _, _, err = mf.resolve(cmd, true); err != nil {
					return err
				}
			} else if mf.dataDir, err = clearingDir(mf.dataDir); err != nil {
				// Required; a kept simulation's directory taken as `deny
				// list` takes it (an outside test saw only the rider form
				// take it).
				return err
			}
			out := cmd.OutOrStdout()
			pending, err := clearing.PendingEnrolments(mf.dataDir)
			if err != nil {
				return err
			}
			if len(pending) > 0 {
				fmt.Fprintf(out, "%d request(s) queued, not applied yet (clearing applies them when it runs)\n", len(pending))
			}
			// Times in the feed's agency zone, as the API shows them.
			loc := time.UTC
			if feedPath != "" {
				feed, err := gtfs.LoadPath(feedPath, feedWarnings(cmd.ErrOrStderr()))
				if err != nil {
					return usageErrorf("--feed %s: %w", feedPath, err)
				}
				if feed.Location() != nil {
					loc = feed.Location()
				}
			}
			at := func(t time.Time) string { return t.In(loc).Format(time.RFC3339) }
			recs, err := clearing.ReadEnrolments(mf.dataDir, rider, nil)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tRIDER\tCATEGORY\tVALID FROM\tVALID UNTIL\tAPPROVED BY\tCREATED")
			for _, e := range recs {
				cat, until := e.Category, ""
				if e.Revoked {
					cat = "(revoked)"
				}
				if !e.ValidUntil.IsZero() {
					until = at(e.ValidUntil)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Rider, cat, at(e.ValidFrom), until, e.ApprovedBy, at(e.CreatedAt))
			}
			return tw.Flush()
		},
	}
	mf.add(cmd, true)
	cmd.Flags().StringVar(&feedPath, "feed", "", "the GTFS feed `DIR|ZIP` clearing prices with: times are shown in its agency's zone (default UTC)")
	return cmd
}
