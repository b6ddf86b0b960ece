// Package registry is nsqlookupd's only state: which producers (nsqd) are
// registered in which topics and channels, and which are tombstoned where.
// The daemon uses it as an application uses an in-memory store: every
// change and every query is one call, queries hand out copies, and the
// locks, indexes and counts stay inside. docs/wire.md, Data model, states
// what the registry holds; this package says how.
//
// # Model
//
// A Producer is an nsqd that has identified itself: what it told in
// IDENTIFY (Info), keyed by the remote address of its connection (Info.ID).
// AddProducer makes one; its connection then registers it in topics and
// channels and unregisters it, and RemoveProducer takes it out of
// everything when the connection ends. A producer entry in a topic can be
// tombstoned (Tombstone): /lookup hides it for the tombstone's lifetime.
// Topics and channels can also be created and deleted over HTTP, and may
// exist without producers. A registration left empty is removed only when
// its name ends in "#ephemeral". The wildcard topic "*" of Lookup,
// Channels, DeleteTopic and Tombstone matches every topic.
//
// # Locking
//
// One sync.RWMutex, mu, guards every field but two atomics. Most changes
// take it for writing once: AddProducer (and once more per batch of
// removeBatch topics of a producer it replaces), Register, Unregister,
// CreateTopic, CreateChannel, DeleteTopic, DeleteChannel and Tombstone.
// RemoveProducer takes it once, then once per batch of removeBatch topics
// the producer held, so that a producer of a million registrations holds
// writers up for one batch at a time. Ping takes no lock. Queries take it
// for reading, and never for long:
// one topic (a /lookup), one batch of topics or channels at a time (the
// walks over everything: wildcards, /topics, /debug), or one producer's
// topics (/nodes). So a REGISTER never waits for more than a short copy, and
// a /lookup never waits for more than one change. The two atomics are read
// without the lock: the generation (Generation), which callers key their
// caches on, and each producer's last update (PING), which changes no
// registration.
//
// # Mechanisms
//
// Each exists for a measurement or a property, named here:
//   - topics, a map from name to topic: a REGISTER or /lookup finds its
//     topic in O(1) (REGISTER at 1M topics; /lookup under load).
//   - order, the same topics in name order, and each topic's channels in
//     name order, in chunked lists (list): /topics and /channels come out
//     sorted without sorting, walks resume where they stopped, and a
//     REGISTER into a topic of 200 000 channels costs what one into a
//     topic of 5 does (the flood scenario of bench/scenario).
//   - producers, in ID order: /nodes and /debug list them without sorting.
//   - each producer's topics (Producer.topics): RemoveProducer and /nodes
//     cost what the producer holds, not the registry's size.
//   - each producer's version: /nodes answers are cached per producer
//     (the churn phase of the load harness) and rebuilt when it changes.
//   - the counts of registered topics, channels and registrations: Stats
//     costs the same at any size (a /metrics scrape).
//   - the tombstone list (tombstones): Stats counts the tombstones younger
//     than their lifetime without walking the registry.
//   - each producer's Listing, beside its last update: the caller keeps
//     there what it lists the producer as, so that an answer reads one
//     place per producer rather than a cache keyed by producer, whose
//     misses grew with the registry (/lookup at 12M registrations,
//     docs/performance.md, Cost with size).
//   - topicsPeak and shrink: maps and slices give back what a burst took
//     (the memory tests; Go maps never shrink).
//
// # Faults
//
// Every change makes all its checks before its first store, and a change
// of several topics (RemoveProducer, a wildcard DeleteTopic or Tombstone)
// is whole topic by topic. RemoveProducer, which calls its caller's
// function between batches, is restartable: called again after a panic cut
// it short, it finishes the removal.
//
// # Invariants
//
// Check verifies each of these, and names the number of any broken:
//
//  1. topics and order hold the same topics, each under its own name, and
//     exactly those that are registered or have a channel.
//  2. A topic's producer entries are sorted by ID, without repeats, and
//     each is a live producer (in producers). (Between the batches of a
//     RemoveProducer, the producer's entries not yet removed are not: run
//     Check when no change is under way.)
//  3. A topic with producer entries is registered.
//  4. A channel's producers are live, without repeats, and each has an
//     entry in the channel's topic.
//  5. A live producer's topics hold exactly the topics that have an entry
//     for it, each with the number of that topic's channels that hold it.
//  6. producers holds each live producer once, in ID order, and none gone.
//  7. registered, channels and registrations count what they name (a
//     registration is a producer entry of a topic or a producer of a
//     channel).
//  8. An entry's tombstone is not dead, and a tombstone in tombstones
//     that is not dead is one entry's.
package registry

import (
	"sync"
	"sync/atomic"
	"time"
)

// Wildcard, as the topic of Lookup, Channels, DeleteTopic and Tombstone,
// matches every topic.
const Wildcard = "*"

// Info is what an nsqd tells about itself in IDENTIFY, and the address of
// its connection.
type Info struct {
	ID               string // the connection's remote address: the producer's key
	Hostname         string
	BroadcastAddress string
	TCPPort          int
	HTTPPort         int
	Version          string
	TopologyZone     string // empty unless given
	TopologyRegion   string // empty unless given
}

// Address is where a producer's HTTP API is reached: what names it as a
// node (Tombstone).
type Address struct {
	BroadcastAddress string
	HTTPPort         int
}

// Address returns the producer's HTTP address.
func (i *Info) Address() Address {
	return Address{BroadcastAddress: i.BroadcastAddress, HTTPPort: i.HTTPPort}
}

// Producer is an identified nsqd as the registry holds it. Its Info and
// Listing never change; the rest is the registry's.
type Producer struct {
	// What an answer reads of each producer it lists (is it active, and
	// how is it listed), first and together: one cache line to fetch.
	lastUpdate atomic.Int64 // unix ns of IDENTIFY or the last PING
	// Listing is the caller's, given to AddProducer: how its answers list
	// the producer (the daemon's /lookup JSON). The registry never reads it.
	Listing []byte

	Info

	// Guarded by DB.mu:
	topics  map[*topic]int32 // topic -> how many of its channels hold the producer
	version uint64           // changes with its topics and its tombstones
	gone    bool             // removed: its calls change nothing
}

// LastUpdate returns the time of the producer's IDENTIFY or last PING.
func (p *Producer) LastUpdate() time.Time { return time.Unix(0, p.lastUpdate.Load()) }

// UpdatedSince reports whether the producer's IDENTIFY or last PING was at
// t or later: one load, where LastUpdate builds a time.
func (p *Producer) UpdatedSince(t time.Time) bool { return p.lastUpdate.Load() >= t.UnixNano() }

func (p *Producer) key() string { return p.ID }

// Kind is the kind of a registration.
type Kind uint8

// The kinds of registration.
const (
	// KindProducer is the registration every identified producer is in;
	// it has no topic or channel.
	KindProducer Kind = iota
	// KindTopic is a producer's registration in a topic.
	KindTopic
	// KindChannel is a producer's registration in a channel of a topic.
	KindChannel
)

// Registration names a registration: its kind, and the topic and channel
// its kind has.
type Registration struct {
	Kind           Kind
	Topic, Channel string
}

// Entry is a producer as a topic holds it, copied out.
type Entry struct {
	Producer *Producer
	// Tombstoned is when the producer was tombstoned in the topic, or the
	// zero time. The tombstone stays after its lifetime, until the
	// producer leaves the topic.
	Tombstoned time.Time
}

// topic is everything registered under one topic name: the topic
// registration, when there is one, and the channel registrations, which
// may exist without it.
type topic struct {
	name       string
	registered bool
	producers  []entry        // the topic registration's, sorted by ID
	channels   *list[channel] // nil without channels: most topics of a flood have none
}

func (t *topic) key() string { return t.name }

// entry is a producer entry of a topic.
type entry struct {
	p    *Producer
	tomb *tombstone // nil: not tombstoned
}

// channel is a channel registration and its producers, in no order.
type channel struct {
	name      string
	producers []*Producer
}

func (c channel) key() string { return c.name }

// tombstone is an entry's tombstone.
type tombstone struct {
	at   int64 // unix ns
	dead bool  // its entry has left, or has another tombstone
}

// DB is the registry. Its methods are safe for concurrent use.
type DB struct {
	mu sync.RWMutex

	topics     map[string]*topic
	topicsPeak int // the most topics has held since it was last made
	order      list[*topic]
	producers  list[*Producer]

	registered, channels, registrations int // counts, for Stats

	lifetime time.Duration // of a tombstone
	// tombstones holds the tombstones made since Tombstone last let go of
	// the dead and expired ones: Stats counts the live ones still young.
	tombstones []*tombstone

	gen atomic.Uint64
}

// New returns an empty registry whose tombstones last lifetime.
func New(lifetime time.Duration) *DB {
	return &DB{topics: make(map[string]*topic), lifetime: lifetime}
}

// Generation returns a number that changes whenever a query's answer may
// have changed, but for the passing of time and PINGs.
func (db *DB) Generation() uint64 { return db.gen.Load() }

// changed marks a change; the caller holds mu.
func (db *DB) changed() { db.gen.Add(1) }
