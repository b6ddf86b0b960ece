package auth

import (
	"fmt"
	"slices"
	"time"
)

// answer is an auth server's answer, as nsqd v1.3.0 decodes it
// (docs/authorization.md, "The auth server").
type answer struct {
	TTL            int    `json:"ttl"`
	Identity       string `json:"identity"`
	IdentityURL    string `json:"identity_url"`
	Authorizations []struct {
		Topic       string   `json:"topic"`
		Channels    []string `json:"channels"`
		Permissions []string `json:"permissions"`
	} `json:"authorizations"`
}

// State is what one secret may reach, as an auth server answered for it,
// until Expires. It is immutable once made, and safe to share. A nil
// *State is a request that reads everything (auth off, an admin, a
// producer): its MaySee, Topics and Channels keep every name.
type State struct {
	Identity    string
	IdentityURL string
	Expires     time.Time
	auths       []authorization
	// size is what the state is estimated to hold in memory, charged to
	// the cache's byte bound.
	size int
}

// authorization is one authorization of a State, its expressions compiled.
type authorization struct {
	topic              matcher
	channels           []matcher
	publish, subscribe bool
}

// Estimated memory of a State, for the cache's byte bound. A compiled
// expression holds its program: measured (runtime.MemStats over 1,000
// compiled copies, Go 1.26, amd64) 0.4 KiB for ".*", 2 KiB for
// "^tenant_a\.", 4.5 KiB for a 35-byte and 7.4 KiB for a 56-byte
// pattern; 1 KiB plus 128 bytes a byte covers them all.
const (
	stateOverhead  = 256
	regexpOverhead = 1 << 10
	regexpPerByte  = 128
)

// newState checks a decoded answer as nsqd v1.3.0 does (known
// permissions, expressions that compile, a positive ttl) and makes the
// State it gives, expiring ttl seconds after now.
func newState(a *answer, now time.Time) (*State, error) {
	s := &State{Identity: a.Identity, IdentityURL: a.IdentityURL, auths: make([]authorization, 0, len(a.Authorizations))}
	s.size = stateOverhead + len(a.Identity) + len(a.IdentityURL)
	compile := func(pattern string) (matcher, error) {
		s.size += regexpOverhead + regexpPerByte*len(pattern)
		return newMatcher(pattern)
	}
	for _, in := range a.Authorizations {
		var out authorization
		for _, p := range in.Permissions {
			switch p {
			case "publish":
				out.publish = true
			case "subscribe":
				out.subscribe = true
			default:
				return nil, fmt.Errorf("unknown permission %q", p)
			}
		}
		var err error
		if out.topic, err = compile(in.Topic); err != nil {
			return nil, fmt.Errorf("unable to compile topic %q - %w", in.Topic, err)
		}
		for _, c := range in.Channels {
			re, err := compile(c)
			if err != nil {
				return nil, fmt.Errorf("unable to compile channel %q - %w", c, err)
			}
			out.channels = append(out.channels, re)
		}
		s.auths = append(s.auths, out)
	}
	if a.TTL <= 0 {
		return nil, fmt.Errorf("invalid TTL %d (must be >0)", a.TTL)
	}
	s.Expires = now.Add(ttlDuration(a.TTL))
	return s, nil
}

// maxTTL bounds a ttl so that it does not overflow a time.Duration; a
// server that says more than a century means "for as long as you like".
const maxTTL = 100 * 365 * 24 * 3600

func ttlDuration(ttl int) time.Duration {
	return time.Duration(min(ttl, maxTTL)) * time.Second
}

// channel reports whether some expression of a matches channel.
func (a *authorization) channel(channel string) bool {
	for i := range a.channels {
		if a.channels[i].match(channel) {
			return true
		}
	}
	return false
}

// MayPublish reports whether the identity may publish to topic, as nsqd
// v1.3.0 decides a PUB: an authorization with the publish permission whose
// topic expression matches the topic and one of whose channel expressions
// matches the empty string (an auth server gives ".*").
func (s *State) MayPublish(topic string) bool {
	for i := range s.auths {
		a := &s.auths[i]
		if a.publish && a.topic.match(topic) && a.channel("") {
			return true
		}
	}
	return false
}

// MaySubscribe reports whether the identity may subscribe to channel of
// topic, as nsqd v1.3.0 decides a SUB: an authorization with the subscribe
// permission whose topic expression matches the topic and one of whose
// channel expressions matches the channel. The expressions are not
// anchored, as in nsqd: "orders" matches "old_orders".
func (s *State) MaySubscribe(topic, channel string) bool {
	for i := range s.auths {
		a := &s.auths[i]
		if a.subscribe && a.topic.match(topic) && a.channel(channel) {
			return true
		}
	}
	return false
}

// Wildcard is lookupd's "*" topic parameter (every topic): it names no
// topic a secret may see.
const Wildcard = "*"

// MaySee reports whether topic is visible to the identity: whether it may
// publish to the topic, or subscribe to some channel of it (an
// authorization with the subscribe permission whose topic expression
// matches and that has channel expressions).
func (s *State) MaySee(topic string) bool {
	if s == nil {
		return true
	}
	if topic == Wildcard {
		return false
	}
	for i := range s.auths {
		a := &s.auths[i]
		if !a.topic.match(topic) {
			continue
		}
		if (a.subscribe && len(a.channels) > 0) || (a.publish && a.channel("")) {
			return true
		}
	}
	return false
}

// Topics keeps, in place, the topics of names the identity may see.
func (s *State) Topics(names []string) []string {
	if s == nil {
		return names
	}
	return slices.DeleteFunc(names, func(t string) bool { return !s.MaySee(t) })
}

// Channels keeps, in place, the channels of topic among names that the
// identity may subscribe to; none of the wildcard.
func (s *State) Channels(topic string, names []string) []string {
	if s == nil {
		return names
	}
	return slices.DeleteFunc(names, func(c string) bool { return topic == Wildcard || !s.MaySubscribe(topic, c) })
}

// Authorizations is how many authorizations the state holds; a state
// with none reaches nothing, and is taken as a refusal.
func (s *State) Authorizations() int {
	return len(s.auths)
}
