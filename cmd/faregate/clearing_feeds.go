package main

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// newFeedsCmd is `faregate clearing feeds`: the fare desk schedules a new
// version of the fare feed on a running clearing house, which takes effect
// at a stated time without a restart.
func newFeedsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "feeds",
		Short: "Schedule fare feed versions on a running clearing house (fare desk)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newFeedsScheduleCmd(), newFeedsListCmd(), newFeedsWithdrawCmd())
	return cmd
}

func newFeedsScheduleCmd() *cobra.Command {
	af := apiFlags{role: clearing.RoleFares}
	var feedPath, from string
	cmd := &cobra.Command{
		Use:   "schedule --feed DIR|ZIP --from TIME",
		Short: "Send a new feed version that prices fare days beginning at or after --from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if feedPath == "" {
				return usageErrorf("--feed: the new feed version (a GTFS directory or zip) is required")
			}
			at, err := clearing.ParseTime(from)
			if err != nil {
				return usageErrorf("--from %q: want an RFC 3339 time with its zone, e.g. 2027-01-01T04:00:00+01:00", from)
			}
			// Loaded here first, so that a broken feed is named (file and
			// line) before anything is sent.
			feed, err := gtfs.LoadPath(feedPath, feedWarnings(cmd.ErrOrStderr()))
			if err != nil {
				return fmt.Errorf("--feed: %w", err)
			}
			if feed.LegRules() == 0 {
				return fmt.Errorf("--feed %s: fare_leg_rules.txt is missing or empty: the feed prices no leg", feedPath)
			}
			z, err := feedZip(feedPath)
			if err != nil {
				return fmt.Errorf("--feed: %w", err)
			}
			var out clearing.FeedScheduleView
			if err := af.callRaw(cmd, "POST", "/v1/feeds?from="+url.QueryEscape(at.Format(time.RFC3339)), "application/zip", z, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&feedPath, "feed", "", "the new feed version: a GTFS Fares v2 directory or zip")
	cmd.Flags().StringVar(&from, "from", "", "when it takes effect (RFC 3339 with zone): fare days beginning then or later are priced with it")
	af.register(cmd)
	return cmd
}

func newFeedsWithdrawCmd() *cobra.Command {
	af := apiFlags{role: clearing.RoleFares}
	var version string
	cmd := &cobra.Command{
		Use:   "withdraw --version VERSION",
		Short: "Withdraw the last scheduled feed version before it takes effect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out clearing.FeedWithdrawView
			if err := af.call(cmd, "DELETE", "/v1/feeds/"+url.PathEscape(version), nil, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the version to withdraw (sha256:0x..., as feeds list shows it)")
	af.register(cmd)
	return cmd
}

func newFeedsListCmd() *cobra.Command {
	af := apiFlags{role: clearing.RoleFares}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "The fare feed's versions in effect and scheduled",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out clearing.FeedListView
			if err := af.call(cmd, "GET", "/v1/feeds", nil, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	af.register(cmd)
	return cmd
}

// feedZip returns the feed at path as a zip: a zip file as it is, a
// directory's .txt files zipped in name order with no times, so that the
// same files always make the same zip (and the same version).
func feedZip(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		// Clearing takes no larger zip: say so before sending it.
		return readInputFile("feed zip", path, clearing.MaxFeedZip)
	}
	var names []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != path {
			return fs.SkipDir
		}
		if !d.IsDir() && filepath.Ext(p) == ".txt" {
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		b, err := readInputFile("feed file", filepath.Join(path, n), gtfs.MaxFileSize)
		if err != nil {
			return nil, err
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
