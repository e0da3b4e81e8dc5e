//! Recordings whose headers lie: a real file in each container MMT accepts (made by ffmpeg),
//! with one header field at a time changed to an extreme or inconsistent value — sample
//! rates of 0 and 4 GHz, 255 channels, 4 GB chunks and packets, tables of a billion entries,
//! durations of centuries. Field positions follow each format's specification, cited per
//! container below; Ogg pages get their CRC recomputed so the reader takes the lie at face
//! value instead of skipping a damaged page.

/// One hostile file: a name saying what lies, and its bytes.
pub struct Lie {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The lying variants of `seed`, a valid file in the container `extension` names
/// (`wav`, `flac`, `mp3`, `m4a`, `ogg` (Vorbis), `opus` (Ogg Opus) or `webm` (Opus)).
pub fn lying_headers(extension: &str, seed: &[u8]) -> Vec<Lie> {
    let edits: Vec<(&str, Vec<Edit>)> = match extension {
        "wav" => wav(seed),
        "flac" => flac(seed),
        "mp3" => mp3(seed),
        "m4a" => mp4(seed),
        "ogg" => vorbis(seed),
        "opus" => ogg_opus(seed),
        "webm" => webm(seed),
        other => panic!("no lies for {other}"),
    };
    edits
        .into_iter()
        .map(|(what, edits)| {
            let mut bytes = seed.to_vec();
            for edit in edits {
                edit.apply(&mut bytes);
            }
            Lie {
                name: format!("{what}.{extension}"),
                bytes,
            }
        })
        .collect()
}

/// Bytes written at an offset; for Ogg, the page whose CRC must then be recomputed.
enum Edit {
    At(usize, Vec<u8>),
    OggCrc(usize),
}

impl Edit {
    fn apply(self, bytes: &mut [u8]) {
        match self {
            Edit::At(offset, value) => bytes[offset..offset + value.len()].copy_from_slice(&value),
            Edit::OggCrc(page) => fix_ogg_crc(bytes, page),
        }
    }
}

fn at(offset: usize, value: impl Into<Vec<u8>>) -> Edit {
    Edit::At(offset, value.into())
}

fn le32(value: u32) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

fn le16(value: u16) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

fn be32(value: u32) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    find_from(haystack, needle, 0)
}

fn find_from(haystack: &[u8], needle: &[u8], from: usize) -> usize {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
        .unwrap_or_else(|| panic!("the seed has no {needle:?}"))
}

/// RIFF/WAVE (Microsoft's Multimedia Programming Interface and Data Specifications 1.0, the
/// `fmt ` chunk: format tag, channels, samples per second, bytes per second, block align,
/// bits per sample).
fn wav(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let fmt = find(seed, b"fmt ") + 8;
    let data = find(seed, b"data");
    vec![
        ("wav-rate-0", vec![at(fmt + 4, le32(0))]),
        ("wav-rate-1", vec![at(fmt + 4, le32(1))]),
        ("wav-rate-4ghz", vec![at(fmt + 4, le32(u32::MAX))]),
        ("wav-channels-0", vec![at(fmt + 2, le16(0))]),
        ("wav-channels-65535", vec![at(fmt + 2, le16(u16::MAX))]),
        ("wav-block-align-0", vec![at(fmt + 12, le16(0))]),
        ("wav-block-align-65535", vec![at(fmt + 12, le16(u16::MAX))]),
        ("wav-bits-0", vec![at(fmt + 14, le16(0))]),
        ("wav-bits-255", vec![at(fmt + 14, le16(255))]),
        ("wav-float-16-bit", vec![at(fmt, le16(3))]),
        ("wav-extensible-short", vec![at(fmt, le16(0xFFFE))]),
        ("wav-data-4gb", vec![at(data + 4, le32(u32::MAX))]),
        ("wav-data-0", vec![at(data + 4, le32(0))]),
        ("wav-riff-4gb", vec![at(4, le32(u32::MAX))]),
        ("wav-fmt-chunk-4gb", vec![at(fmt - 4, le32(0xFFFF_FFF0))]),
    ]
}

/// FLAC (RFC 9639 §8.2 STREAMINFO, the first metadata block at byte 8: block sizes 16+16
/// bits, frame sizes 24+24, sample rate 20, channels−1 3, bits−1 5, total samples 36; §8.6
/// VORBIS_COMMENT lengths are 32-bit little-endian).
fn flac(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let info = 8;
    // Sample rate, channels, bits and total samples share bytes 10..18 of STREAMINFO.
    let packed = |rate: u32, channels: u8, bits: u8, total: u64| -> Vec<u8> {
        let value: u64 = (u64::from(rate) << 44)
            | (u64::from(channels - 1) << 41)
            | (u64::from(bits - 1) << 36)
            | (total & 0xF_FFFF_FFFF);
        value.to_be_bytes().to_vec()
    };
    let mut lies = vec![
        ("flac-rate-0", vec![at(info + 10, packed(0, 2, 16, 48_000))]),
        (
            "flac-rate-1mhz",
            vec![at(info + 10, packed(0xF_FFFF, 2, 16, 48_000))],
        ),
        (
            "flac-eight-channels",
            vec![at(info + 10, packed(48_000, 8, 16, 48_000))],
        ),
        (
            "flac-32-bit",
            vec![at(info + 10, packed(48_000, 2, 32, 48_000))],
        ),
        (
            "flac-total-2-pow-36",
            vec![at(info + 10, packed(48_000, 2, 16, 0xF_FFFF_FFFF))],
        ),
        (
            "flac-block-65535",
            vec![at(info, vec![0xFF, 0xFF, 0xFF, 0xFF])],
        ),
        ("flac-block-0", vec![at(info, vec![0, 0, 0, 0])]),
        ("flac-streaminfo-16mb", vec![at(5, vec![0xFF, 0xFF, 0xFF])]),
    ];
    // ffmpeg writes a VORBIS_COMMENT block: its vendor string and its first comment claim
    // 4 GB (what `make fuzz` found symphonia allocating).
    if let Some(comment) = seed.windows(4).position(|w| w == b"Lavf") {
        lies.push(("flac-vendor-4gb", vec![at(comment - 4, le32(u32::MAX))]));
        let count =
            comment + u32::from_le_bytes(seed[comment - 4..comment].try_into().unwrap()) as usize;
        lies.push(("flac-comment-4gb", vec![at(count + 4, le32(0xFFFF_FFF0))]));
        lies.push(("flac-comments-4g", vec![at(count, le32(u32::MAX))]));
    }
    lies
}

/// MPEG-1/2 audio (ISO/IEC 11172-3 §2.4.1.3 frame header; ID3v2.4 §3.1 syncsafe tag size;
/// the Xing/Info VBR header: flags, then frame count and byte count when flagged).
fn mp3(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let mut lies = Vec::new();
    let frame = if seed.starts_with(b"ID3") {
        lies.push(("mp3-id3-256mb", vec![at(6, vec![0x7F, 0x7F, 0x7F, 0x7F])]));
        10 + syncsafe(&seed[6..10])
    } else {
        0
    };
    let header = find_from(seed, &[0xFF], frame);
    lies.push((
        "mp3-rate-reserved",
        vec![at(header + 2, vec![seed[header + 2] | 0x0C])],
    ));
    lies.push((
        "mp3-bitrate-free",
        vec![at(header + 2, vec![seed[header + 2] & 0x0F])],
    ));
    lies.push((
        "mp3-bitrate-bad",
        vec![at(header + 2, vec![seed[header + 2] | 0xF0])],
    ));
    let vbr = seed.windows(4).position(|w| w == b"Xing" || w == b"Info");
    if let Some(vbr) = vbr {
        lies.push((
            "mp3-xing-4g-frames",
            vec![at(vbr + 4, be32(0x0F)), at(vbr + 8, be32(u32::MAX))],
        ));
        lies.push((
            "mp3-xing-4gb",
            vec![at(vbr + 4, be32(0x0F)), at(vbr + 12, be32(u32::MAX))],
        ));
    }
    lies
}

fn syncsafe(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .fold(0, |n, b| (n << 7) | usize::from(b & 0x7F))
}

/// ISO base media / MP4 (ISO/IEC 14496-12: box = size:u32 type:4cc; `mdhd` v0 timescale at
/// +12 and duration at +16 of its body; `stsz` sample_size, sample_count, entries; `stts`,
/// `stsc`, `stco` entry_count; the `mp4a` AudioSampleEntry's channelcount, samplesize and
/// 16.16 samplerate at +16, +18, +24 of its body).
fn mp4(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let body = |name: &[u8]| find(seed, name) + 4;
    let (mdhd, stsz, stts, stsc, stco, mp4a) = (
        body(b"mdhd"),
        body(b"stsz"),
        body(b"stts"),
        body(b"stsc"),
        body(b"stco"),
        body(b"mp4a"),
    );
    let moov = find(seed, b"moov");
    let mdat = find(seed, b"mdat");
    vec![
        ("m4a-timescale-0", vec![at(mdhd + 12, be32(0))]),
        (
            "m4a-duration-centuries",
            vec![at(mdhd + 12, be32(1)), at(mdhd + 16, be32(u32::MAX))],
        ),
        ("m4a-sample-size-4gb", vec![at(stsz + 4, be32(0xFFFF_FFF0))]),
        ("m4a-sample-count-1g", vec![at(stsz + 8, be32(0x4000_0000))]),
        ("m4a-first-sample-4gb", vec![at(stsz + 12, be32(u32::MAX))]),
        ("m4a-stts-entries-1g", vec![at(stts + 4, be32(0x4000_0000))]),
        ("m4a-stts-count-4g", vec![at(stts + 8, be32(u32::MAX))]),
        ("m4a-stsc-entries-1g", vec![at(stsc + 4, be32(0x4000_0000))]),
        ("m4a-stco-entries-1g", vec![at(stco + 4, be32(0x4000_0000))]),
        ("m4a-chunk-offset-4gb", vec![at(stco + 8, be32(u32::MAX))]),
        ("m4a-channels-65535", vec![at(mp4a + 16, vec![0xFF, 0xFF])]),
        ("m4a-rate-0", vec![at(mp4a + 24, be32(0))]),
        ("m4a-moov-4gb", vec![at(moov - 4, be32(u32::MAX))]),
        ("m4a-moov-size-1", vec![at(moov - 4, be32(1))]),
        ("m4a-mdat-4gb", vec![at(mdat - 4, be32(u32::MAX))]),
    ]
}

/// Ogg (RFC 3533 §6: `OggS`, version, type, granule position:u64 at +6, serial, sequence,
/// CRC at +22, segment count at +26, lacing values) carrying Vorbis (Vorbis I spec §4.2.2
/// identification header: `\x01vorbis`, version:u32, channels:u8, rate:u32, three bitrates,
/// blocksizes:u8).
fn vorbis(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let id = find(seed, b"\x01vorbis") + 7;
    let mut lies = vec![
        (
            "vorbis-channels-255",
            vec![at(id + 4, vec![255]), Edit::OggCrc(0)],
        ),
        (
            "vorbis-channels-0",
            vec![at(id + 4, vec![0]), Edit::OggCrc(0)],
        ),
        ("vorbis-rate-0", vec![at(id + 5, le32(0)), Edit::OggCrc(0)]),
        (
            "vorbis-rate-4ghz",
            vec![at(id + 5, le32(u32::MAX)), Edit::OggCrc(0)],
        ),
        (
            "vorbis-blocksize-huge",
            vec![at(id + 21, vec![0xFF]), Edit::OggCrc(0)],
        ),
    ];
    lies.extend(ogg_pages(
        seed,
        [
            "vorbis-granule-max",
            "vorbis-granule-jump",
            "vorbis-segments-255",
        ],
    ));
    lies
}

/// Ogg Opus (RFC 7845 §5.1 `OpusHead`: version, channel count, pre-skip:u16, input sample
/// rate:u32, gain, mapping family).
fn ogg_opus(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let head = find(seed, b"OpusHead") + 8;
    let mut lies = vec![
        (
            "opus-channels-255",
            vec![at(head + 1, vec![255]), Edit::OggCrc(0)],
        ),
        (
            "opus-channels-0",
            vec![at(head + 1, vec![0]), Edit::OggCrc(0)],
        ),
        (
            "opus-pre-skip-65535",
            vec![at(head + 2, le16(u16::MAX)), Edit::OggCrc(0)],
        ),
        (
            "opus-input-rate-4ghz",
            vec![at(head + 4, le32(u32::MAX)), Edit::OggCrc(0)],
        ),
        (
            "opus-mapping-255",
            vec![
                at(head + 1, vec![255]),
                at(head + 10, vec![255]),
                Edit::OggCrc(0),
            ],
        ),
    ];
    lies.extend(ogg_pages(
        seed,
        ["opus-granule-max", "opus-granule-jump", "opus-segments-255"],
    ));
    lies
}

/// Lies in the Ogg pages themselves: granule positions (durations) and segment tables.
fn ogg_pages(seed: &[u8], names: [&'static str; 3]) -> Vec<(&'static str, Vec<Edit>)> {
    let pages: Vec<usize> = seed
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"OggS")
        .map(|(i, _)| i)
        .collect();
    let last = *pages.last().unwrap();
    let second_audio = pages[pages.len().min(4) - 1];
    vec![
        (
            names[0],
            vec![
                at(last + 6, u64::MAX.to_le_bytes().to_vec()),
                Edit::OggCrc(last),
            ],
        ),
        (
            names[1],
            vec![
                at(second_audio + 6, (1u64 << 62).to_le_bytes().to_vec()),
                Edit::OggCrc(second_audio),
            ],
        ),
        (
            names[2],
            vec![at(second_audio + 26, vec![255]), Edit::OggCrc(second_audio)],
        ),
    ]
}

/// The CRC of the page starting at `page` (RFC 3533 §6: polynomial 0x04c11db7, no reflection,
/// zero initial value, computed with the CRC field zeroed), written back into it.
fn fix_ogg_crc(bytes: &mut [u8], page: usize) {
    let segments = usize::from(bytes[page + 26]);
    let table = page + 27;
    let body: usize = bytes[table..(table + segments).min(bytes.len())]
        .iter()
        .map(|&b| usize::from(b))
        .sum();
    let end = (table + segments + body).min(bytes.len());
    bytes[page + 22..page + 26].fill(0);
    let mut crc = 0u32;
    for &byte in &bytes[page..end] {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    bytes[page + 22..page + 26].copy_from_slice(&crc.to_le_bytes());
}

/// Matroska/WebM (RFC 9559: EBML element = ID, then a variable-length size; the audio track's
/// SamplingFrequency 0xB5 (8-byte float), Channels 0x9F; Cluster 0x1F43B675; SimpleBlock
/// 0xA3). The elements are found after the Tracks element so a payload byte is not mistaken
/// for one.
fn webm(seed: &[u8]) -> Vec<(&'static str, Vec<Edit>)> {
    let tracks = find(seed, &[0x16, 0x54, 0xAE, 0x6B]);
    let rate = find_from(seed, &[0xB5, 0x88], tracks) + 2;
    let channels = find_from(seed, &[0x9F, 0x81], tracks) + 2;
    let cluster = find(seed, &[0x1F, 0x43, 0xB6, 0x75]);
    let block = find_from(seed, &[0xA3], cluster + 4);
    let head = find(seed, b"OpusHead") + 8;
    let float = |v: f64| v.to_be_bytes().to_vec();
    vec![
        ("webm-rate-0", vec![at(rate, float(0.0))]),
        ("webm-rate-1e12", vec![at(rate, float(1e12))]),
        ("webm-rate-nan", vec![at(rate, float(f64::NAN))]),
        ("webm-rate-negative", vec![at(rate, float(-48_000.0))]),
        ("webm-channels-255", vec![at(channels, vec![255])]),
        ("webm-channels-0", vec![at(channels, vec![0])]),
        ("webm-opus-head-255-channels", vec![at(head + 1, vec![255])]),
        // An 8-byte size field claiming 2^56 − 2 bytes, for the cluster and for a block.
        (
            "webm-cluster-huge",
            vec![at(
                cluster + 4,
                vec![0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE],
            )],
        ),
        (
            "webm-block-huge",
            vec![at(block + 1, vec![0x10, 0xFF, 0xFF, 0xFE])],
        ),
    ]
}

/// Recomputes the CRC of every page of an Ogg stream: on a file straight from an encoder this
/// changes nothing, which is how the tests check the CRC code.
pub fn recompute_ogg_crcs(bytes: &mut [u8]) {
    let pages: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"OggS")
        .map(|(i, _)| i)
        .collect();
    for page in pages {
        fix_ogg_crc(bytes, page);
    }
}
