//! A model blob flashed as data: find its length in a partition from the blob's prefix.

use super::ModelProblem;
use crate::LoadError;

/// The blob at the start of `partition` (flash mapped at `address`), cut to the length its
/// prefix gives (`data_offset + data_len`, `FORMAT.md` §1); not validated beyond that (that
/// is [`Model::from_bytes`](crate::Model::from_bytes)'s job).
///
/// Erased flash (all `0xFF`) and zeroed memory (QEMU) are [`ModelProblem::Absent`].
pub fn flashed_model(partition: &[u8], address: u32) -> Result<&[u8], ModelProblem> {
    let Some(prefix) = partition.get(..32) else {
        return Err(ModelProblem::Invalid(LoadError::TooShort));
    };
    if prefix.iter().all(|&b| b == 0xFF) || prefix.iter().all(|&b| b == 0) {
        return Err(ModelProblem::Absent { address });
    }
    if prefix.get(..8) != Some(&crate::blob::format::MAGIC[..]) {
        return Err(ModelProblem::Invalid(LoadError::BadMagic));
    }
    let word = |at: usize| {
        prefix
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let length = word(16)
        .zip(word(20))
        .and_then(|(offset, len)| offset.checked_add(len))
        .ok_or(ModelProblem::Invalid(LoadError::BadLength))?;
    partition
        .get(..length as usize)
        .ok_or(ModelProblem::TooLong {
            length,
            partition: u32::try_from(partition.len()).unwrap_or(u32::MAX),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::model::Model;

    static BLOB: &[u8] = include_bytes!("../../../../models/shakespeare-mcu.bin");

    #[test]
    fn a_flashed_blob_is_found_and_loads() {
        let mut flash = std::vec![0xFFu8; 1 << 20];
        flash[..BLOB.len()].copy_from_slice(BLOB);
        let blob = flashed_model(&flash, 0x1010_0000).unwrap();
        assert_eq!(blob, BLOB);
        Model::from_bytes(blob).unwrap();
    }

    #[test]
    fn empty_short_foreign_and_oversized_partitions_are_told_apart() {
        let absent = Err(ModelProblem::Absent {
            address: 0x1010_0000,
        });
        assert_eq!(flashed_model(&[0xFF; 64], 0x1010_0000), absent);
        assert_eq!(flashed_model(&[0; 64], 0x1010_0000), absent);
        assert_eq!(
            flashed_model(&[1; 16], 0),
            Err(ModelProblem::Invalid(LoadError::TooShort))
        );
        assert_eq!(
            flashed_model(&[b'x'; 64], 0),
            Err(ModelProblem::Invalid(LoadError::BadMagic))
        );
        assert_eq!(
            flashed_model(&BLOB[..BLOB.len() - 1], 0),
            Err(ModelProblem::TooLong {
                length: BLOB.len() as u32,
                partition: BLOB.len() as u32 - 1
            })
        );
        let mut huge = BLOB[..64].to_vec();
        huge[16..24].copy_from_slice(&[0xFF; 8]);
        assert_eq!(
            flashed_model(&huge, 0),
            Err(ModelProblem::Invalid(LoadError::BadLength))
        );
    }
}
