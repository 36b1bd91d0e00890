package fare

import (
	"net/url"
	"slices"
	"strings"
)

// RedactURL is rawURL (a node's, or a comma-separated list of NATS
// servers') as it may be printed: its credentials replaced by xxxxx. They
// are the password, or a user alone (NATS's token form, nats://TOKEN@host),
// every query value, and each path segment longer than 12 characters (an
// API key, as hosted nodes take one: /v3/KEY). One that does not parse
// as scheme://host is read loosely (redactLoose); an IPC path is returned
// as it is.
func RedactURL(rawURL string) string {
	if strings.Contains(rawURL, ",") {
		urls := strings.Split(rawURL, ",")
		for i, u := range urls {
			urls[i] = redactOneURL(u)
		}
		return strings.Join(urls, ",")
	}
	return redactOneURL(rawURL)
}

func redactOneURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return redactLoose(rawURL)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
	}
	if p := redactSegments(u.Path); p != u.Path {
		u.Path, u.RawPath = p, ""
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			for i := range vs {
				vs[i] = "xxxxx"
			}
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	// Not u.String: the user's xxxxx is not to be escaped.
	return strings.Replace(u.String(), "xxxxx%40", "xxxxx@", 1)
}

// redactLoose redacts what is no scheme://host URL. A path (an IPC
// socket's: from / or .) is returned as it is. Otherwise, read loosely
// (looseParts), its user information (NATS takes user:pw@host:port without
// a scheme, as an outside review found printed), the path segments over
// 12 characters and a query are replaced: a URL with a bad escape, or a
// node's written without its scheme (host/v3/KEY).
func redactLoose(raw string) string {
	if isPath(raw) {
		return raw
	}
	scheme, user, host, tail := looseParts(raw)
	out := ""
	if scheme != "" {
		out = scheme + "://"
	}
	if user != "" {
		out += "xxxxx@"
	}
	return out + host + redactTail(tail)
}

// isPath reports whether raw, having no scheme, is a file's path.
func isPath(raw string) bool {
	return !strings.Contains(raw, "://") && (strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "."))
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

// looseParts splits raw, read loosely: its scheme (before "://"), its user
// information (before the last '@' ahead of the path), its host and what
// follows the host.
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

// RedactError is err with what RedactURL hides of rawURL hidden in its
// text too (an HTTP client's error quotes the URL it asked, its query
// included); errors.Is and As see err.
func RedactError(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	var secrets []string
	for _, raw := range strings.Split(rawURL, ",") {
		u, perr := url.Parse(raw)
		if perr != nil || u.Scheme == "" || u.Host == "" {
			// As redactLoose hides them: the user information, a
			// password within it, and what follows the host.
			if isPath(raw) {
				continue
			}
			_, user, _, tail := looseParts(raw)
			if user != "" {
				secrets = append(secrets, user)
				if _, pw, ok := strings.Cut(user, ":"); ok {
					secrets = append(secrets, pw)
				}
			}
			path, query, _ := strings.Cut(tail, "?")
			for _, seg := range strings.Split(path, "/") {
				if secretSegment(seg) {
					secrets = append(secrets, seg)
				}
			}
			if query != "" {
				secrets = append(secrets, query)
				secrets = append(secrets, strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == '=' || r == '#' })...)
			}
			continue
		}
		if u.User != nil {
			if pw, has := u.User.Password(); has {
				secrets = append(secrets, pw, url.QueryEscape(pw))
			} else {
				secrets = append(secrets, u.User.Username())
			}
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if secretSegment(seg) {
				secrets = append(secrets, seg)
			}
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				secrets = append(secrets, v, url.QueryEscape(v))
			}
		}
	}
	text := err.Error()
	redacted := text
	for _, s := range secrets {
		if len(s) >= 4 { // a shorter one would blot out the message's own words
			redacted = strings.ReplaceAll(redacted, s, "xxxxx")
		}
	}
	if redacted == text {
		return err
	}
	return redactedError{err, redacted}
}

// redactedError is an error printed with its secrets hidden.
type redactedError struct {
	err  error
	text string
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }
