package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/templates"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// `faregate clearing faces enrol|erase|show|list`: the faces desk's
// commands. Unlike `deny` and `enrol` they do not queue requests in
// clearing's data dir: a request would put descriptors (biometric data) in
// a plain file there. They call a running clearing's settlement API with a
// `faces` token instead (show and list take an auditor's too), so
// templates travel only over the API (HTTPS in production) into the
// encrypted template store.

// loadFaceKey reads the face template store's key from --face-key-file,
// else $FAREGATE_GALLERY_KEY; with neither, face enrolment is off (nil).
func loadFaceKey(file, dataDir string, maxGallery int, log *slog.Logger) ([]byte, error) {
	if maxGallery < 0 {
		return nil, usageErrorf("--face-max-gallery %d: want a positive bound, or 0 for the default", maxGallery)
	}
	if err := checkInputFile("--face-key-file", file, maxKeyFileSize); err != nil {
		return nil, err
	}
	key, err := templates.LoadKey(file)
	switch {
	case errors.Is(err, templates.ErrNoKey):
		log.Info("face enrolment off: no --face-key-file or $" + templates.KeyEnv)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("--face-key-file: %w", err)
	}
	// Clearing does not hold the gates' policies: its bound is judged
	// against the defaults' (the gates warn of theirs).
	if why := unmeasuredGallery(maxGallery, gallery.DefaultPolicy(), nil); why != "" {
		log.Warn("--face-max-gallery: " + why)
	}
	// Whoever reads the key opens every template: say so when others
	// than its owner may (the terminal's key and NATS seeds are warned of
	// the same way).
	if file != "" {
		if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("the face template key file can be read by others than its owner: anyone who reads it opens every enrolled face template (chmod 600)", "key", file, "mode", fmt.Sprintf("%#o", st.Mode().Perm()))
		}
		// Beside the store it opens, a copy of the data dir (a backup,
		// a volume snapshot) carries the templates and their key together.
		if in, err := pathWithin(file, dataDir); err == nil && in {
			log.Warn("the face template key file is inside clearing's data dir: a backup or copy of the data dir carries the encrypted templates and the key that opens them together; keep it outside (README, \"Face enrolment\")", "key", file, "data", dataDir)
		}
	}
	return key, nil
}

// apiFlags reach a running clearing's settlement API.
type apiFlags struct {
	url, tokenFile, ca string
	// role is the API role the commands act as (the faces desk when empty).
	role clearing.Role
}

// apiTokenEnv holds the API token when --token-file is not given.
const apiTokenEnv = "FAREGATE_API_TOKEN"

func (f *apiFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.url, "api", "http://127.0.0.1:8080", "the settlement API of the running clearing house")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding a "+string(f.desk())+" desk's API token (default $"+apiTokenEnv+")")
	fl.StringVar(&f.ca, "api-ca", "", "PEM CA the API's HTTPS certificate is checked against (default the system's)")
}

func (f *apiFlags) desk() clearing.Role {
	if f.role == "" {
		return clearing.RoleFaces
	}
	return f.role
}

// call sends a request to the API and decodes its JSON answer into out,
// returning the API's own error for any status but 2xx.
func (f *apiFlags) call(cmd *cobra.Command, method, path string, body, out any) error {
	if body == nil {
		return f.callRaw(cmd, method, path, "", nil, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return f.callRaw(cmd, method, path, "application/json", b, out)
}

// callRaw is call with a body of the given content type (none if nil).
func (f *apiFlags) callRaw(cmd *cobra.Command, method, path, contentType string, body []byte, out any) error {
	token := os.Getenv(apiTokenEnv)
	if f.tokenFile != "" {
		b, err := readInputFile("--token-file", f.tokenFile, maxKeyFileSize)
		if err != nil {
			return err
		}
		warnReadableByOthers(cmd.ErrOrStderr(), "--token-file", f.tokenFile, "anyone who reads it acts as this desk")
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return usageErrorf("no API token: give --token-file FILE or $%s (faregate clearing token issue --role %s)", apiTokenEnv, f.desk())
	}
	client := &http.Client{Timeout: time.Minute}
	if f.ca != "" {
		pem, err := readInputFile("--api-ca", f.ca, maxPEMFileSize)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--api-ca %s: no PEM certificate", f.ca)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// A base URL: the endpoint's path is appended to it, so a query or
	// fragment would swallow it (an outside review's ?k=KEY/v1/faces/...).
	if base, err := url.Parse(f.url); err != nil || strings.ContainsAny(f.url, "?#") || base.Scheme == "" || base.Host == "" {
		return usageErrorf("--api %q: want the settlement API's base URL, http(s)://HOST:PORT, without a query", fare.RedactURL(f.url))
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, strings.TrimRight(f.url, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("--api: %w", fare.RedactError(err, f.url))
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client's error quotes the URL, a user-only token or a key
		// in the base path included.
		return fmt.Errorf("settlement API: %w", fare.RedactError(err, f.url))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("settlement API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("clearing refused (%d): %s", resp.StatusCode, e.Error)
		}
		return fmt.Errorf("clearing answered %s", resp.Status)
	}
	return json.Unmarshal(b, out)
}

func newFacesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "faces",
		Short: "Enrol face subjects into the terminals' galleries, erase them (consent withdrawal), show them",
		Long: `The faces desk's commands, through a running clearing's settlement API with a
token of role faces (faregate clearing token issue --role faces): enrol a
subject's templates with its consent and scope, erase a subject (consent
withdrawal is erasure), show a subject's metadata and the terminals holding
it, list the subjects. No descriptor is ever written to clearing's data dir
in plain, nor shown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newFacesEnrolCmd(), newFacesEraseCmd(), newFacesShowCmd(), newFacesListCmd())
	return cmd
}

func newFacesEnrolCmd() *cobra.Command {
	var (
		af                                   apiFlags
		ff                                   faceFlags
		subject, model                       string
		consentBy, consentAt, purpose, basis string
		stops, lines                         []string
		faceOnly, samePerson                 bool
		cardToken, cardKey                   string
	)
	cmd := &cobra.Command{
		Use:   "enrol --subject ID [IMAGE...] [--descriptor B64...]",
		Short: "Enrol a subject: templates from images (one face each) or descriptors, consent, scope",
		Long: `Enrol a subject for face-only travel (--face-only: 1:N within the galleries
of the gates in scope) and/or as the holder of a card (--card-token, read
from stdin with -, or --card-key, its deny-list hash: the face must match
when the card is presented as a concession card, one whose enrolment gives
a rider category, at a camera gate in scope; other cards are not checked).
The scope is --stops (stop
ids of registered terminals) and --lines (a route or network of the
registry's terminal legs). Templates come from images (one face each, with
the model directory's recognizer) or --descriptor values (base64 of 128
little-endian float32, with --model naming their pipeline). The consent
record is required: who gave it, when, for what, and the legal basis.`,
		Example: `  faregate clearing faces enrol --token-file desk.token --subject rider-4f2a --face-only --stops metro-s01 \
      --consent-by "the subject" --consent-at 2026-12-01T10:00:00+01:00 --purpose "face-only travel" \
      --legal-basis "GDPR Art. 9(2)(a) explicit consent" a.jpg b.jpg c.jpg`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if subject == "" {
				return usageErr("--subject is required: the pseudonymous subject id")
			}
			if cardToken != "" && cardKey != "" {
				return usageErr("give --card-token or --card-key, not both")
			}
			if cardKey != "" {
				if _, err := fare.ParseDenyKey(strings.TrimPrefix(cardKey, "0x")); err != nil {
					return usageErrorf("--card-key: %w", err)
				}
			}
			descs, pipeline, err := ff.probes(cmd.Context(), args, true)
			if err != nil {
				return err
			}
			if model != "" {
				if len(args) > 0 && model != pipeline {
					return usageErrorf("--model %q: the images were described by %q", model, pipeline)
				}
				pipeline = model
			}
			if cardToken != "" {
				if cardToken == "-" {
					line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
					if err != nil && !errors.Is(err, io.EOF) {
						return fmt.Errorf("read --card-token from stdin: %w", err)
					}
					cardToken = strings.TrimRight(line, "\r\n")
				}
				if err := fare.CheckDeskToken(cardToken); err != nil {
					return usageErrorf("--card-token: %v", err)
				}
				cardKey = fare.DenyKey(fare.Card, cardToken) // the token never leaves this process
			}
			body := clearing.FaceEnrolBody{Subject: subject, ModelID: pipeline, Stops: stops, Lines: lines, FaceOnly: faceOnly, CardKey: cardKey,
				SamePersonAsErased: samePerson}
			body.Consent.GivenBy, body.Consent.At, body.Consent.Purpose, body.Consent.LegalBasis = consentBy, consentAt, purpose, basis
			for _, d := range descs {
				v := make([]float64, len(d))
				for i, x := range d {
					v[i] = float64(x)
				}
				body.Descriptors = append(body.Descriptors, v)
			}
			var out clearing.FaceSubject
			if err := af.call(cmd, http.MethodPost, "/v1/faces", body, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), faceSubjectOutput(out))
		},
	}
	af.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&subject, "subject", "", "pseudonymous subject id (1 to 64 of [A-Za-z0-9_-]; never a name): the face token the gates' events carry")
	fl.StringVar(&model, "model", "", "the pipeline of --descriptor values (default the model directory's)")
	fl.StringVar(&consentBy, "consent-by", "", "who gave consent: the subject, or a guardian")
	fl.StringVar(&consentAt, "consent-at", "", "when consent was given (RFC 3339)")
	fl.StringVar(&purpose, "purpose", "", "what the templates may be used for")
	fl.StringVar(&basis, "legal-basis", "GDPR Art. 9(2)(a) explicit consent", "the legal basis of processing (the operator's DPO confirms it)")
	fl.StringSliceVar(&stops, "stops", nil, "stop ids whose gates receive the subject")
	fl.StringSliceVar(&lines, "lines", nil, "routes or networks (registry terminal legs) whose gates receive the subject")
	fl.BoolVar(&faceOnly, "face-only", false, "the subject travels by face alone (1:N at the gates in scope)")
	fl.BoolVar(&samePerson, "same-person-as-erased", false, "the subject id was erased before and this is the same person (its account, charges, debt and deny-list entries stay with the id; another person takes a new id)")
	fl.StringVar(&cardToken, "card-token", "", "the subject's card (- reads it from stdin); only its hash is sent")
	fl.StringVar(&cardKey, "card-key", "", "the subject's card as its deny-list hash (0x and 32 hex digits)")
	fl.StringVar(&ff.models, "models", "", "model directory for images (default $FAREGATE_MODELS, ./models, ../shared/models)")
	fl.BoolVar(&ff.cnn, "cnn", false, "detect faces with the MMOD CNN instead of HOG")
	fl.IntVar(&ff.minFace, "min-face", biometrics.DefaultMinFaceSize, "smallest face side in pixels an enrolment image may show")
	fl.StringArrayVar(&ff.descs, "descriptor", nil, "a descriptor instead of an image (repeatable)")
	return cmd
}

func newFacesEraseCmd() *cobra.Command {
	var af apiFlags
	var subject, reason string
	cmd := &cobra.Command{
		Use:   "erase --subject ID [--reason TEXT]",
		Short: "Erase a subject everywhere (consent withdrawal is erasure)",
		Long: `Erase a subject: its templates and consent from clearing's template store,
every revision of its values in the FAREGATE_FACES bucket (overwritten, then
purged), and so from every gate's gallery (at once for a watching gate; an
offline gate stops matching faces once its last head is older than its
--face-gallery-max-age). Clearing keeps an erasure record (who, when, why,
where it was sent), no template.`,
		Example: "  faregate clearing faces erase --token-file desk.token --subject rider-4f2a --reason \"consent withdrawn\"",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := fare.ValidateID(subject); err != nil {
				// Checked here: the server's 400 was exit 1 (an outside review).
				return usageErrorf("--subject %q: %v", subject, err)
			}
			path := "/v1/faces/" + url.PathEscape(subject)
			if reason != "" {
				path += "?reason=" + url.QueryEscape(reason)
			}
			var out clearing.FaceErasure
			if err := af.call(cmd, http.MethodDelete, path, nil, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "the subject id")
	cmd.Flags().StringVar(&reason, "reason", "", "why (default: consent withdrawn)")
	return cmd
}

func newFacesShowCmd() *cobra.Command {
	var af apiFlags
	var subject string
	cmd := &cobra.Command{
		Use:   "show --subject ID",
		Short: "Show a subject's metadata (never descriptors), the terminals holding it, its erasures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := fare.ValidateID(subject); err != nil {
				// Checked here: the server's 400 was exit 1 (an outside review).
				return usageErrorf("--subject %q: %v", subject, err)
			}
			var out clearing.FaceView
			if err := af.call(cmd, http.MethodGet, "/v1/faces/"+url.PathEscape(subject), nil, &out); err != nil {
				return err
			}
			if out.Enrolled != nil {
				s := faceSubjectOutput(*out.Enrolled)
				out.Enrolled = &s
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "the subject id")
	return cmd
}

func newFacesListCmd() *cobra.Command {
	var af apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the enrolled subjects (metadata only), all pages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []clearing.FaceSubjectEntry
			after := ""
			for {
				var page struct {
					Subjects  []clearing.FaceSubjectEntry `json:"subjects"`
					NextAfter string                      `json:"next_after"`
				}
				if err := af.call(cmd, http.MethodGet, "/v1/faces?limit=1000&after="+url.QueryEscape(after), nil, &page); err != nil {
					return err
				}
				for _, s := range page.Subjects {
					s.CardKey = hex0x(s.CardKey) // 0x hex like every hash
					all = append(all, s)
				}
				if page.NextAfter == "" {
					break
				}
				after = page.NextAfter
			}
			if all == nil {
				all = []clearing.FaceSubjectEntry{}
			}
			return printJSON(cmd.OutOrStdout(), all)
		},
	}
	af.register(cmd)
	return cmd
}

// faceSubjectOutput is s as the command line prints it: its card key (the
// card's deny-list hash) in 0x hex like every hash.
func faceSubjectOutput(s clearing.FaceSubject) clearing.FaceSubject {
	s.CardKey = hex0x(s.CardKey)
	return s
}

// warnReadableByOthers warns on w when the secret file path (given as
// flag) can be read by others than its owner, saying what they could do
// with it; as the terminal's key and clearing's face key are warned of.
func warnReadableByOthers(w io.Writer, flag, path, what string) {
	if path == "" {
		return
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(w, "warning: %s %s can be read by others than its owner (mode %#o): %s (chmod 600)\n", flag, path, st.Mode().Perm(), what)
	}
}
