//! Task-level `cpu` and `memory` as ECS accepts them: numbers, numeric strings, or strings
//! with units ("0.5 vCPU", "1 vcpu", "1 GB", "512 MiB").

/// CPU units from a number of units or a vCPU string.
pub fn parse_cpu(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let lower = t.to_ascii_lowercase();
    let num = lower
        .strip_suffix("vcpu")
        .map(str::trim)
        .ok_or_else(|| format!("\"{s}\" is not CPU units (\"256\") or vCPUs (\"0.5 vCPU\")"))?;
    let v: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\": \"{num}\" is not a number of vCPUs"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("\"{s}\": vCPUs must be positive"));
    }
    Ok((v * 1024.0).round() as u64)
}

/// MiB from a number of MiB or a string with a unit (MB/MiB = MiB, GB/GiB = 1024 MiB, as ECS).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let lower = t.to_ascii_lowercase();
    let (num, factor) = [("gib", 1024.0), ("gb", 1024.0), ("mib", 1.0), ("mb", 1.0)]
        .iter()
        .find_map(|(suffix, f)| lower.strip_suffix(suffix).map(|n| (n.trim(), *f)))
        .ok_or_else(|| format!("\"{s}\" is not MiB (\"512\") or a size such as \"1 GB\""))?;
    let v: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\": \"{num}\" is not a number"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("\"{s}\": memory must be positive"));
    }
    Ok((v * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_cpu("256"), Ok(256));
        assert_eq!(parse_cpu("0.5 vCPU"), Ok(512));
        assert_eq!(parse_cpu("2 vcpu"), Ok(2048));
        assert!(parse_cpu("lots").unwrap_err().contains("lots"));
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("1 GB"), Ok(1024));
        assert_eq!(parse_memory("0.5GB"), Ok(512));
        assert_eq!(parse_memory("512 MiB"), Ok(512));
        assert!(parse_memory("-1 GB").is_err());
        assert!(parse_memory("1 TB").is_err());
    }
}
