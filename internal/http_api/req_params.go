package http_api

import (
	"errors"
	"net/http"
	"net/url"
)

// ErrMissingParam is returned by ReqParams.Get for an absent parameter.
var ErrMissingParam = errors.New("key not in query params")

// ReqParams is a request's strictly parsed query string. The body is never
// read: no route of this daemon takes one.
type ReqParams struct {
	url.Values
}

// NewReqParams parses req's query string; a malformed one is an error.
func NewReqParams(req *http.Request) (*ReqParams, error) {
	values, err := url.ParseQuery(req.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	return &ReqParams{values}, nil
}

// Get returns the first value of key, or ErrMissingParam when key is absent
// (present but empty is "").
func (r *ReqParams) Get(key string) (string, error) {
	v, ok := r.Values[key]
	if !ok {
		return "", ErrMissingParam
	}
	return v[0], nil
}
