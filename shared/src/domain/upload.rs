//! How a resumable upload is cut into parts.

/// Parts are at least this large: S3 refuses smaller parts (except the last), and fewer,
/// larger parts mean fewer round trips.
pub const MIN_PART_BYTES: u64 = 8 * 1024 * 1024;
/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1024 * 1024;

/// The parts of a resumable upload of `size` bytes: numbered from 1, all `part_size` long but
/// the last. Derived from the size alone, so the server never stores it and every process
/// (the one that created the upload, the one that completes it) agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPlan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
}

impl UploadPlan {
    /// `size` must be at least 1.
    pub fn for_size(size: u64) -> Self {
        let size = size.max(1);
        // Whole MiB, and few enough parts for S3 whatever the size.
        let part_size = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        let part_size = part_size.max(MIN_PART_BYTES);
        let part_count = u32::try_from(size.div_ceil(part_size)).expect("at most MAX_PARTS parts");
        Self {
            size,
            part_size,
            part_count,
        }
    }

    pub fn numbers(&self) -> std::ops::RangeInclusive<u32> {
        1..=self.part_count
    }

    pub fn contains(&self, number: u32) -> bool {
        (1..=self.part_count).contains(&number)
    }

    /// The exact length of part `number` (`contains(number)` must hold).
    pub fn part_length(&self, number: u32) -> u64 {
        let start = u64::from(number - 1) * self.part_size;
        self.part_size.min(self.size - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_size_exactly_and_respect_s3s_limits() {
        for size in [
            1,
            MIN_PART_BYTES - 1,
            MIN_PART_BYTES,
            MIN_PART_BYTES + 1,
            300 * MIB + 17,
            5 * 1024 * 1024 * MIB,
        ] {
            let plan = UploadPlan::for_size(size);
            let total: u64 = plan.numbers().map(|n| plan.part_length(n)).sum();
            assert_eq!(total, size, "parts of {size}");
            assert!(u64::from(plan.part_count) <= MAX_PARTS, "{size}");
            assert!(plan.part_size >= MIN_PART_BYTES && plan.part_size.is_multiple_of(MIB));
            assert!(plan.part_length(plan.part_count) >= 1);
            assert!(!plan.contains(0) && !plan.contains(plan.part_count + 1));
        }
        let plan = UploadPlan::for_size(300 * MIB + 17);
        assert_eq!((plan.part_size, plan.part_count), (MIN_PART_BYTES, 38));
        assert_eq!(plan.part_length(38), 300 * MIB + 17 - 37 * MIN_PART_BYTES);
        // 5 TiB (S3's object limit) still fits in 10,000 parts.
        assert_eq!(
            UploadPlan::for_size(5 * 1024 * 1024 * MIB).part_count,
            9_987
        );
    }
}
