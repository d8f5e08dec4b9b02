package httpfake

import (
	"context"
	"testing"
	"time"
)

func TestInjectorTakesTheFirstFaultThatApplies(t *testing.T) {
	var in Injector[string]
	in.FailNext(2, "get:a")
	in.FailNext(1, "set:b")
	in.FailNext(0, "never")
	isSet := func(f string) bool { return f[:3] == "set" }

	if f, ok := in.Take(isSet); !ok || f != "set:b" {
		t.Fatalf("Take(set) = %q, %v; want set:b", f, ok)
	}
	if f, ok := in.Take(isSet); ok {
		t.Fatalf("Take(set) after its one use = %q; want none", f)
	}
	for i := range 2 {
		if f, ok := in.Take(nil); !ok || f != "get:a" {
			t.Fatalf("Take #%d = %q, %v; want get:a", i, f, ok)
		}
	}
	if f, ok := in.Take(nil); ok {
		t.Fatalf("Take after the queue ran out = %q; want none", f)
	}
}

func TestInjectorAlwaysAfterQueueAndClear(t *testing.T) {
	var in Injector[int]
	in.FailAlways(503)
	in.FailNext(1, 500)
	in.SetLatency(time.Hour)
	for _, want := range []int{500, 503, 503} {
		if f, ok := in.Take(nil); !ok || f != want {
			t.Fatalf("Take = %d, %v; want %d", f, ok, want)
		}
	}
	in.Clear()
	if f, ok := in.Take(nil); ok || in.Latency() != 0 {
		t.Fatalf("after Clear: Take = %d, %v, latency %v; want nothing", f, ok, in.Latency())
	}
}

func TestWaitEndsWithTheClientOrTheStop(t *testing.T) {
	if !Wait(context.Background(), 0, nil) {
		t.Fatal("Wait without latency reported an early end")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, time.Hour, nil) {
		t.Fatal("Wait outlived a cancelled request context")
	}
	stop := make(chan struct{})
	close(stop)
	if Wait(context.Background(), time.Hour, stop) {
		t.Fatal("Wait outlived a closed stop channel")
	}
}
