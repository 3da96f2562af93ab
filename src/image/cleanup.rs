//! Which pulled images to remove (the ECS agent's automated image cleanup): one no task has
//! used for `age` seconds and no task not yet stopped uses. Images an operator imported are
//! never removed: berth cannot fetch them again.
//!
//! Pure: the store's records, each task's use and the time in; names out.

use super::ImageRecord;

/// One task's use of an image (normal form): live, or stopped at a time (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub image: String,
    pub stopped_at: Option<u64>,
}

/// The pulled images to remove at `now` (seconds).
pub fn unused(images: &[ImageRecord], uses: &[Use], now: u64, age: u64) -> Vec<String> {
    images
        .iter()
        .filter(|r| r.pulled)
        .filter(|r| {
            let mine = uses.iter().filter(|u| u.image == r.name);
            let mut last = r.imported_at;
            for u in mine {
                match u.stopped_at {
                    None => return false,
                    Some(t) => last = last.max(t),
                }
            }
            now.saturating_sub(last) >= age
        })
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, pulled: bool, at: u64) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            id: "sha256:x".into(),
            layers: Vec::new(),
            config: Default::default(),
            size: 0,
            imported_at: at,
            pulled,
        }
    }

    fn used(image: &str, stopped_at: Option<u64>) -> Use {
        Use {
            image: image.into(),
            stopped_at,
        }
    }

    #[test]
    fn a_pulled_image_unused_past_the_age_goes_and_nothing_else() {
        let images = [
            rec("old:1", true, 100),
            rec("recent:1", true, 900),
            rec("imported:1", false, 100),
            rec("running:1", true, 100),
            rec("stopped-late:1", true, 100),
        ];
        let uses = [
            used("running:1", None),
            used("stopped-late:1", Some(950)),
            used("old:1", Some(200)),
        ];
        assert_eq!(unused(&images, &uses, 1000, 500), vec!["old:1".to_string()]);
        assert!(unused(&images, &uses, 1000, 5000).is_empty());
    }
}
