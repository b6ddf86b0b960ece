package test

import "fmt"

// Shape is the shape of a registry filled for a test or a benchmark: P
// producers, T topics each held by S producers, C channels per topic;
// T*S*(1+C) registrations.
type Shape struct {
	Name       string
	P, T, S, C int
}

// Sizes grow a registry 100x: what one topic's queries and changes cost
// should stay flat across them.
var Sizes = []Shape{
	{Name: "1k", P: 10, T: 40, S: 5, C: 4},
	{Name: "10k", P: 100, T: 400, S: 5, C: 4},
	{Name: "100k", P: 1000, T: 4000, S: 5, C: 4},
}

// LookupSizes are the load harness's answer (20 producers, 5 channels a
// topic) in registries of 10k, 100k and 1M registrations, with 500 and
// 5,000 producers: what one topic's /lookup costs should be the same in
// each (docs/performance.md, Cost with size).
var LookupSizes = []Shape{
	{Name: "10k-500p", P: 500, T: 84, S: 20, C: 5},
	{Name: "100k-500p", P: 500, T: 840, S: 20, C: 5},
	{Name: "1M-500p", P: 500, T: 8400, S: 20, C: 5},
	{Name: "10k-5000p", P: 5000, T: 84, S: 20, C: 5},
	{Name: "100k-5000p", P: 5000, T: 840, S: 20, C: 5},
	{Name: "1M-5000p", P: 5000, T: 8400, S: 20, C: 5},
}

// Fill builds sz with add and register and returns the producers: add(i)
// adds producer i, for i from 0 to P-1; then each topic t, named
// fmt.Sprintf(topicName, t), is registered by S producers in turn, each
// registering the topic (channel "") and its C channels, named
// fmt.Sprintf(channelName, c).
func Fill[P any](sz Shape, topicName, channelName string, add func(i int) P, register func(p P, topic, channel string)) []P {
	producers := make([]P, sz.P)
	for i := range producers {
		producers[i] = add(i)
	}
	for t := range sz.T {
		topic := fmt.Sprintf(topicName, t)
		for k := range sz.S {
			p := producers[(t*sz.S+k)%sz.P]
			register(p, topic, "")
			for c := range sz.C {
				register(p, topic, fmt.Sprintf(channelName, c))
			}
		}
	}
	return producers
}
