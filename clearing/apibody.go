package clearing

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// readJSONBody decodes a request's JSON body into v (a pointer to a
// struct) as the API's OpenAPI document describes it, refusing what
// encoding/json would let through: a Content-Type other than
// application/json, or with a charset other than UTF-8 (415), a body over limit bytes (413), a member whose
// name matches a field only in another case or matches none (400), and
// anything after the object (400). It returns the status to answer with
// and an error naming the problem.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64, v any) (int, error) {
	if ct := r.Header.Get("Content-Type"); ct == "" {
		return http.StatusUnsupportedMediaType, errors.New("no Content-Type: send the body as application/json")
	} else if mt, params, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: want application/json", ct)
	} else if cs, ok := params["charset"]; ok && !slices.ContainsFunc([]string{"utf-8", "utf8", "us-ascii"}, func(u string) bool { return strings.EqualFold(cs, u) }) {
		// JSON is UTF-8 (RFC 8259): a body said to be in another charset
		// would be read as what it is not.
		return http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: JSON is UTF-8, send charset=utf-8 or none", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", limit)
		}
		return http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		// RFC 8259 8.1: no byte order mark in JSON sent over a network.
		return http.StatusBadRequest, errors.New("body is not JSON: it begins with a UTF-8 byte order mark (EF BB BF): send the JSON without it")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return http.StatusBadRequest, fmt.Errorf("body is not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return http.StatusBadRequest, errors.New("body holds more than one JSON value")
	}
	if raw == nil {
		// json.Unmarshal takes null into a struct as nothing at all: the
		// request would be refused for every member missing, not for
		// what it is (an outside review).
		return http.StatusBadRequest, fmt.Errorf("the body: want %s, got null", jsonKind(reflect.TypeOf(v).Elem()))
	}
	if err := uniqueMembers(json.NewDecoder(bytes.NewReader(body)), ""); err != nil {
		return http.StatusBadRequest, err
	}
	if err := exactMembers(raw, reflect.TypeOf(v).Elem(), ""); err != nil {
		return http.StatusBadRequest, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return http.StatusBadRequest, jsonTypeError(err)
	}
	return 0, nil
}

// jsonTypeError words a JSON type mismatch in JSON's terms (the member and
// the kind of value it takes) rather than encoding/json's, which names Go
// types a client never sees ("cannot unmarshal array into Go value of type
// clearing.paymentRequest"). Other errors pass through.
func jsonTypeError(err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	what := "the body"
	if te.Field != "" {
		what = fmt.Sprintf("member %q", te.Field)
	}
	return fmt.Errorf("%s: want %s, got %s", what, jsonKind(te.Type), te.Value)
}

// jsonKind names the kind of JSON value that decodes into t.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another kind of value"
	}
	if t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another kind of value"
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// uniqueMembers reads one JSON value from dec and refuses an object that
// names a member twice: decoders disagree on which one counts (Go's takes
// the last), so {"media":"card",...,"media":"face"} is ambiguous, not a
// face (RFC 8259 4; I-JSON, RFC 7493). at is the path so far.
func uniqueMembers(dec *json.Decoder, at string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := k.(string)
			if seen[name] {
				return fmt.Errorf("member %q given twice: give it once", at+name)
			}
			seen[name] = true
			if err := uniqueMembers(dec, at+name+"."); err != nil {
				return err
			}
		}
		_, err = dec.Token() // }
		return err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := uniqueMembers(dec, fmt.Sprintf("%s%d.", at, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ]
		return err
	}
	return nil
}

// exactMembers checks that every member of each JSON object in raw names a
// field of t (by its json tag, in the same case), down through nested
// structs and slices of them. at is the path so far, for the error.
func exactMembers(raw any, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := raw.(map[string]any)
		if !ok {
			return nil // a type mismatch: json.Unmarshal names it
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
		}
		for k, v := range obj {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("unknown field %q%s (field names are case-sensitive)", k, where(at))
			}
			if err := exactMembers(v, ft, at+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := raw.([]any)
		if !ok {
			return nil
		}
		for i, v := range arr {
			if err := exactMembers(v, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func where(at string) string {
	if at == "" {
		return ""
	}
	return " in " + strings.TrimPrefix(at, ".")
}
