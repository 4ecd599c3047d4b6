package consumer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// kafka-go has no client for the DeleteRecords API (key 21), which moves a
// partition's log start forward as retention would: these are its request
// and response (versions 0 and 1 share their shape), registered with
// kafka-go's protocol package the first time deleteRecords runs.
type deleteRecordsRequest struct {
	Topics    []deleteRecordsTopic `kafka:"min=v0,max=v1"`
	TimeoutMs int32                `kafka:"min=v0,max=v1"`
}

func (*deleteRecordsRequest) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

type deleteRecordsTopic struct {
	Name       string                   `kafka:"min=v0,max=v1"`
	Partitions []deleteRecordsPartition `kafka:"min=v0,max=v1"`
}

type deleteRecordsPartition struct {
	PartitionIndex int32 `kafka:"min=v0,max=v1"`
	Offset         int64 `kafka:"min=v0,max=v1"`
}

type deleteRecordsResponse struct {
	ThrottleTimeMs int32                        `kafka:"min=v0,max=v1"`
	Topics         []deleteRecordsResponseTopic `kafka:"min=v0,max=v1"`
}

func (*deleteRecordsResponse) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

type deleteRecordsResponseTopic struct {
	Name       string                           `kafka:"min=v0,max=v1"`
	Partitions []deleteRecordsResponsePartition `kafka:"min=v0,max=v1"`
}

type deleteRecordsResponsePartition struct {
	PartitionIndex int32 `kafka:"min=v0,max=v1"`
	LowWatermark   int64 `kafka:"min=v0,max=v1"`
	ErrorCode      int16 `kafka:"min=v0,max=v1"`
}

var registerDeleteRecords sync.Once

// deleteRecords deletes the records of topic's partition below offset, on the
// single broker of the test stack (the leader of every partition).
func deleteRecords(t testing.TB, brokers []string, topic string, partition int, offset int64) {
	t.Helper()
	registerDeleteRecords.Do(func() { protocol.Register(&deleteRecordsRequest{}, &deleteRecordsResponse{}) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	res, err := tr.RoundTrip(ctx, kafka.TCP(brokers[0]), &deleteRecordsRequest{
		Topics:    []deleteRecordsTopic{{Name: topic, Partitions: []deleteRecordsPartition{{PartitionIndex: int32(partition), Offset: offset}}}},
		TimeoutMs: 10_000,
	})
	if err != nil {
		t.Fatalf("delete records of %s/%d below %d: %v", topic, partition, offset, err)
	}
	resp, ok := res.(*deleteRecordsResponse)
	if !ok || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("delete records of %s/%d: unexpected response %+v", topic, partition, res)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.LowWatermark != offset {
		t.Fatalf("delete records of %s/%d below %d: error %v, log starts at %d", topic, partition, offset,
			kafka.Error(p.ErrorCode), p.LowWatermark)
	}
}
