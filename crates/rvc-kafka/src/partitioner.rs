//! The Java client's default partitioner for keyed records.
//!
//! rskafka has no partitioner, so we compute the partition exactly like
//! `org.apache.kafka.common.utils.Utils.murmur2` + `Utils.toPositive` +
//! `% numPartitions` (the Java producer's `BuiltInPartitioner.partitionForKey`,
//! also kafka-python's `DefaultPartitioner`). Every producer that follows the
//! Java rule (Java, kafka-python, librdkafka with `partitioner=murmur2_random`)
//! puts a key on the same partition as we do.

/// Kafka's 32-bit murmur2 hash (`Utils.murmur2`), seed `0x9747b28c`.
///
/// Returns the same (signed) value as the Java method.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    // Java: `int h = seed ^ length;` (length wraps like a Java int).
    let mut h: u32 = SEED ^ (length as u32);

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // Java's switch with fall-through over the remaining 1..3 bytes. The Java
    // code masks each byte with 0xff, so bytes are treated as unsigned.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    // Java uses `>>>` (unsigned shift) here.
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;

    h as i32
}

/// `Utils.toPositive`: clears the sign bit (not `abs`, so `i32::MIN` maps to 0).
pub fn to_positive(number: i32) -> i32 {
    number & 0x7fff_ffff
}

/// The partition for `key` among `partitions` partitions, as the Java client picks it.
///
/// `partitions` must be positive; 0 or a negative count yields partition 0.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors from Apache Kafka's own unit test:
    /// `clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java`, `testMurmur2()`
    /// (apache/kafka on GitHub). These are the values the Java client's `Utils.murmur2` returns.
    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                *expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    /// More values computed with the Java client's `Utils.murmur2`, published in Akka's
    /// `akka-cluster-sharding-typed/.../internal/Murmur2Spec.scala` ("expected correct hash
    /// values from the kafka murmur2 impl"). They cover every tail length 1..=5.
    #[test]
    fn murmur2_matches_akka_published_kafka_values() {
        let cases: &[(&str, i32)] = &[
            ("1", -1_993_445_489),
            ("12", 126_087_238),
            ("123", -267_702_483),
            ("1234", -1_614_185_708),
            ("12345", -1_188_365_604),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()), *expected, "murmur2({key:?})");
        }
    }

    /// Values from kafka-python 3.0.12's `kafka.partitioner.default.murmur2` (a line-by-line
    /// port of the Java method; it returns the unsigned 32-bit value, converted to Java's signed
    /// int here). They cover the empty key and bytes >= 0x80 (Java masks each byte with `& 0xff`).
    #[test]
    fn murmur2_matches_kafka_python_for_empty_and_high_bytes() {
        let unsigned = |v: u32| v as i32;
        assert_eq!(murmur2(b""), unsigned(275_646_681));
        assert_eq!(murmur2(&[0xff]), unsigned(3_983_499_611));
        assert_eq!(murmur2(&[0x7f]), unsigned(21_296_028));
        assert_eq!(
            murmur2(&[0x80, 0x90, 0xa0, 0xb0, 0xff, 0xfe, 0xfd]),
            unsigned(304_333_059)
        );
    }

    #[test]
    fn to_positive_clears_sign_bit_like_java() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(-973_932_308), (-973_932_308_i32) & 0x7fff_ffff);
        assert_eq!(to_positive(42), 42);
    }

    #[test]
    fn partition_for_key_is_positive_hash_mod_count() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 6 = 0, % 7 = 1
        assert_eq!(to_positive(murmur2(b"21")), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 6), 1_173_551_340 % 6);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(partition_for_key(b"anything", 1), 0);
        assert_eq!(partition_for_key(b"anything", 0), 0);
        for n in 1..50 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
        }
    }
}
