package fare

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// RedactURL is rawURL, one URL (an Ethereum node's, a NATS server's, an
// API's), as it may be printed: its credentials replaced by xxxxx. They
// are the password, or a user alone (NATS's token form, nats://TOKEN@host),
// every query value (a key alone, the key), and each path segment longer
// than 12 characters (an API key, as hosted nodes take one: /v3/KEY). One
// that does not parse as scheme://host, or holds an '@' past its host (a
// password holding '/', '?' or '#'), is read loosely (redactLoose). A file's
// path (an IPC socket's: from / or .) is returned as it is. A comma is part
// of the URL (a node's query may hold one): RedactURLList splits NATS's
// lists.
func RedactURL(rawURL string) string {
	if isPath(rawURL) {
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsRune(u.Path+u.RawQuery+u.Fragment, '@') || !hostLike(u.Host) {
		return redactLoose(rawURL)
	}
	out := u.Scheme + "://"
	if u.User != nil {
		if _, has := u.User.Password(); has {
			out += u.User.Username() + ":xxxxx@"
		} else {
			out += "xxxxx@"
		}
	}
	out += u.Host + redactSegments(u.EscapedPath())
	if u.RawQuery != "" || u.ForceQuery {
		out += "?" + redactQuery(u.RawQuery)
	}
	return out
}

// RedactURLList is RedactURL of each URL of a comma-separated list (NATS's
// servers of a cluster).
func RedactURLList(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		parts[i] = RedactURL(u)
	}
	return strings.Join(parts, ",")
}

// redactLoose redacts what is no plain scheme://host URL, read loosely
// (looseParts): its user information (NATS takes user:pw@host:port without
// a scheme, as an outside review found printed), the path segments over
// 12 characters and a query are replaced, and a host that is no host name
// (the last '@' was in a query) too: a URL with a bad escape, a password
// holding '/', '?' or '#', or a node's written without its scheme
// (host/v3/KEY).
func redactLoose(raw string) string {
	scheme, user, host, tail := looseParts(raw)
	out := ""
	if scheme != "" {
		out = scheme + "://"
	}
	if user != "" {
		out += "xxxxx@"
	}
	if !hostLike(host) {
		return out + "xxxxx"
	}
	return out + host + redactTail(tail)
}

// hostLike reports whether s can be a host[:port]: letters, digits and
// . - _ : [ ] % only.
func hostLike(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]%") == ""
}

// isPath reports whether raw is a file's path: from / (not //) or ., with
// no scheme.
func isPath(raw string) bool {
	return !strings.Contains(raw, "://") && (strings.HasPrefix(raw, "/") && !strings.HasPrefix(raw, "//") || strings.HasPrefix(raw, "."))
}

// redactTail is what follows a loosely read URL's host with its long path
// segments and its query replaced, its fragment dropped.
func redactTail(tail string) string {
	tail, _, _ = strings.Cut(tail, "#")
	path, query, hasQuery := strings.Cut(tail, "?")
	out := redactSegments(path)
	if hasQuery && query != "" {
		out += "?xxxxx"
	}
	return out
}

// redactQuery is a raw query with each value replaced, and each key given
// without a value (it may be the key itself: ?APIKEY).
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if k, _, ok := strings.Cut(p, "="); ok {
			parts[i] = k + "=xxxxx"
		} else {
			parts[i] = "xxxxx"
		}
	}
	return strings.Join(parts, "&")
}

// looseParts splits raw, read loosely: its scheme (before "://"), its user
// information (before the last '@'), its host and what follows the host.
func looseParts(raw string) (scheme, user, host, tail string) {
	rest := raw
	if sc, r, ok := strings.Cut(raw, "://"); ok {
		scheme, rest = sc, r
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, rest = rest[:at], rest[at+1:]
	}
	host = rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host, tail = rest[:i], rest[i:]
	}
	return scheme, user, host, tail
}

// redactSegments is path with each segment that may be a key replaced.
func redactSegments(path string) string {
	segs := strings.Split(path, "/")
	if !slices.ContainsFunc(segs, secretSegment) {
		return path
	}
	for i, seg := range segs {
		if secretSegment(seg) {
			segs[i] = "xxxxx"
		}
	}
	return strings.Join(segs, "/")
}

// secretSegment reports whether a URL path segment may be a key.
func secretSegment(seg string) bool { return len(seg) > 12 }

// RedactError is err with what RedactURL hides of each of rawURLs hidden
// in its text too (an HTTP client's error quotes the URL it asked, its
// query included); errors.Is and As see err. Each secret is hidden as it
// is, escaped, and in its pieces between the characters an error may cut
// or quote it at, of 4 characters or more. An error that quotes a URL
// that does not parse (url.Parse's) may still show a piece of it: callers
// say "not a URL" in their own words instead.
func RedactError(err error, rawURLs ...string) error {
	if err == nil {
		return nil
	}
	var secrets []string
	for _, raw := range rawURLs {
		secrets = append(secrets, secretsOf(raw)...)
	}
	text := err.Error()
	redacted := text
	// Longest first: a piece must not break up the whole before it goes.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if len(s) >= 4 { // a shorter one would blot out the message's own words
			repl := "xxxxx"
			if strings.HasSuffix(s, "@") { // a short token where it stands
				repl += "@"
			}
			redacted = strings.ReplaceAll(redacted, s, repl)
		}
	}
	if redacted == text {
		return err
	}
	return redactedError{err, redacted}
}

// secretsOf lists what RedactURL hides of raw: the password (or a user
// alone, a token), long path segments and the query, read loosely (the
// widest reading) and as parsed (decoded), each with its escaped forms and
// its pieces. A user name beside a password is no secret; a short token is
// hidden where it stands before its '@' (a word of the message could be
// spelled the same).
func secretsOf(raw string) []string {
	if isPath(raw) {
		return nil
	}
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		q := strconv.Quote(s)
		out = append(out, s, url.QueryEscape(s), url.PathEscape(s), q[1:len(q)-1])
		out = append(out, strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(`:@/?#&="\`, r) })...)
	}
	userinfo := func(user string) {
		if _, pw, ok := strings.Cut(user, ":"); ok {
			add(pw)
		} else if len(user) >= 8 {
			add(user)
		} else if user != "" {
			out = append(out, user+"@", url.PathEscape(user)+"@")
		}
	}
	_, user, host, tail := looseParts(raw)
	userinfo(user)
	if !hostLike(host) {
		add(host)
	}
	tail, frag, _ := strings.Cut(tail, "#")
	add(frag)
	path, query, _ := strings.Cut(tail, "?")
	for _, seg := range strings.Split(path, "/") {
		if secretSegment(seg) {
			add(seg)
		}
	}
	add(query)
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if pw, has := u.User.Password(); has {
			add(pw)
		} else {
			userinfo(u.User.Username())
		}
	}
	return out
}

// redactedError is an error printed with its secrets hidden.
type redactedError struct {
	err  error
	text string
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }
