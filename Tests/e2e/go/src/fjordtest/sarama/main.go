// Sarama 1.22 against a Fjord broker: produce and consume a partition at a protocol generation
// (-version: "default" is Sarama's own, 0.8.2.0: Produce v0 / Fetch v0), with one codec, and
// optionally run a consumer group that commits, restarts and resumes from its committed offsets.
// Prints one line per step ("ok <step>" or "FAIL <step>: <why>") and exits 1 if a step failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

var failed bool

func step(name string, err error) bool {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", name, err)
		failed = true
		return false
	}
	fmt.Printf("ok %s\n", name)
	return true
}

func config(version string, codec string) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.ClientID = "fjord-sarama-test"
	if version != "default" {
		v, err := sarama.ParseKafkaVersion(version)
		if err != nil {
			return nil, err
		}
		c.Version = v
	}
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewManualPartitioner
	switch codec {
	case "none":
		c.Producer.Compression = sarama.CompressionNone
	case "gzip":
		c.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		c.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		c.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		c.Producer.Compression = sarama.CompressionZSTD
	default:
		return nil, fmt.Errorf("unknown codec %q", codec)
	}
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	return c, c.Validate()
}

func produce(brokers []string, c *sarama.Config, topic string, from, count int) error {
	producer, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		return err
	}
	defer producer.Close()
	var messages []*sarama.ProducerMessage
	for i := from; i < from+count; i++ {
		messages = append(messages, &sarama.ProducerMessage{
			Topic:     topic,
			Partition: 0,
			Key:       sarama.StringEncoder(fmt.Sprintf("k%d", i)),
			Value:     sarama.StringEncoder(fmt.Sprintf("v%d", i)),
		})
	}
	if err := producer.SendMessages(messages); err != nil {
		return err
	}
	for i, m := range messages {
		if m.Offset != int64(from+i) {
			return fmt.Errorf("message %d stored at offset %d", from+i, m.Offset)
		}
	}
	return nil
}

// consume reads offsets 0..<count of partition 0 and checks their keys and values.
func consume(brokers []string, c *sarama.Config, topic string, count int) error {
	consumer, err := sarama.NewConsumer(brokers, c)
	if err != nil {
		return err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return err
	}
	defer pc.Close()
	deadline := time.After(20 * time.Second)
	for i := 0; i < count; i++ {
		select {
		case m := <-pc.Messages():
			if m.Offset != int64(i) || string(m.Key) != fmt.Sprintf("k%d", i) || string(m.Value) != fmt.Sprintf("v%d", i) {
				return fmt.Errorf("offset %d: got offset %d key %q value %q", i, m.Offset, m.Key, m.Value)
			}
		case e := <-pc.Errors():
			return e
		case <-deadline:
			return fmt.Errorf("timed out after %d of %d messages", i, count)
		}
	}
	return nil
}

type handler struct {
	want     int
	seen     []int64
	finished chan struct{}
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.seen = append(h.seen, m.Offset)
		s.MarkMessage(m, "")
		if len(h.seen) == h.want {
			close(h.finished)
			return nil
		}
	}
	return nil
}

// groupRound joins `group`, consumes `want` messages, commits them and leaves; returns their offsets.
func groupRound(brokers []string, c *sarama.Config, group, topic string, want int) ([]int64, error) {
	g, err := sarama.NewConsumerGroup(brokers, group, c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &handler{want: want, finished: make(chan struct{})}
	errs := make(chan error, 1)
	go func() {
		// Consume returns at each rebalance; join again until the handler has what it wants.
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil {
				errs <- err
				return
			}
		}
	}()
	select {
	case <-h.finished:
	case err = <-errs:
	case e := <-g.Errors():
		err = e
	case <-time.After(40 * time.Second):
		err = fmt.Errorf("timed out with offsets %v", h.seen)
	}
	cancel()
	// Close commits what was marked.
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	return h.seen, err
}

func group(brokers []string, c *sarama.Config, topic string) error {
	c.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	name := "g-" + topic
	first, err := groupRound(brokers, c, name, topic, 10)
	if err != nil {
		return fmt.Errorf("first round: %v", err)
	}
	if len(first) != 10 || first[0] != 0 || first[9] != 9 {
		return fmt.Errorf("first round read offsets %v", first)
	}
	if err := produce(brokers, c, topic, 20, 5); err != nil {
		return fmt.Errorf("producing more: %v", err)
	}
	second, err := groupRound(brokers, c, name, topic, 15)
	if err != nil {
		return fmt.Errorf("second round: %v", err)
	}
	if second[0] != 10 || second[14] != 24 {
		return fmt.Errorf("second round did not resume at the committed offset 10: %v", second)
	}
	return nil
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma-separated")
	version := flag.String("version", "default", "Kafka version Sarama speaks (default: Sarama's own)")
	codec := flag.String("codec", "none", "none, gzip, snappy, lz4 or zstd")
	topic := flag.String("topic", "", "topic to use (auto-created)")
	runGroup := flag.Bool("group", false, "also run the consumer group with commits and a restart")
	retention := flag.Bool("retention", false, "commit with a retention time (OffsetCommit v2 instead of v1)")
	flag.Parse()
	list := strings.Split(*brokers, ",")
	c, err := config(*version, *codec)
	if !step("config", err) {
		os.Exit(1)
	}
	if *retention {
		c.Consumer.Offsets.Retention = time.Hour
	}
	if step("produce", produce(list, c, *topic, 0, 20)) {
		step("consume", consume(list, c, *topic, 20))
		if *runGroup {
			step("group", group(list, c, *topic))
		}
	}
	if failed {
		os.Exit(1)
	}
}
