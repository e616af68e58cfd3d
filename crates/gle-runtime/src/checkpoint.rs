//! Checkpoints: everything a simulation needs to go on exactly as if it had not stopped —
//! every buffer, the optimiser's moments, the position in the protocol (data pass, overridden
//! parameters, metric accumulators), epoch counters and the plateau schedule — as an `.npz`.

use crate::{RunError, Simulation, data, npy, refill, zip};

const VERSION: f64 = 1.0;

fn member(name: impl Into<String>, data: &[f64]) -> (String, Vec<u8>) {
    (format!("{}.npy", name.into()), npy::encode(&[data.len()], data))
}

impl Simulation {
    /// The state of the simulation as the bytes of an `.npz` archive.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut members = Vec::new();
        let feed = self.feed.as_ref();
        let meta = [
            VERSION,
            self.step as f64,
            self.optim.t as f64,
            self.optim.lr_scale,
            self.best_loss.unwrap_or(f64::NAN),
            self.bad_epochs as f64,
            feed.map_or(0.0, |_| 1.0),
            feed.map_or(0.0, |f| f.dataset as f64),
            feed.map_or(0.0, |f| f64::from(u8::from(f.test))),
            feed.map_or(0.0, |f| f.steps_per_sample as f64),
            self.feed_step as f64,
            self.data.len() as f64,
            self.program.learnables.len() as f64,
            self.saved_params.len() as f64,
            self.metrics.loss_sum,
            self.metrics.loss_count as f64,
            self.metrics.correct as f64,
            self.metrics.samples as f64,
        ];
        members.push(member("meta", &meta));
        let lens: Vec<f64> = self.data.iter().map(|d| d.len() as f64).collect();
        members.push(member("buffer_lengths", &lens));
        for (k, d) in self.data.iter().enumerate() {
            members.push(member(format!("buffer{k}"), d));
        }
        for k in 0..self.program.learnables.len() {
            members.push(member(format!("adam_m{k}"), &self.optim.m[k]));
            members.push(member(format!("adam_s{k}"), &self.optim.s[k]));
        }
        let epochs: Vec<f64> = self.epochs.iter().map(|e| *e as f64).collect();
        members.push(member("epochs", &epochs));
        if let Some(f) = feed {
            let order: Vec<f64> = f.order.iter().map(|i| *i as f64).collect();
            members.push(member("feed_order", &order));
        }
        for (j, (buf, values)) in self.saved_params.iter().enumerate() {
            members.push(member(format!("saved{j}_{buf}"), values));
        }
        members.push(member("metric_sums", &self.metrics.sums));
        if let Some(window) = &self.adjoint {
            members.push(member("adjoint_window", window.frames()));
        }
        zip::write(&members)
    }

    /// Restores a checkpoint made by [`Simulation::checkpoint`] of the same model; the next
    /// protocol run resumes where it was taken.
    pub fn restore(&mut self, bytes: &[u8], what: &str) -> Result<(), RunError> {
        let members = zip::read(bytes, what).map_err(RunError::new)?;
        let get = |name: &str| -> Result<Vec<f64>, RunError> {
            let (_, contents) = members
                .iter()
                .find(|(n, _)| n == &format!("{name}.npy"))
                .ok_or_else(|| RunError::new(format!("{what}: not a glec checkpoint (no `{name}`)")))?;
            Ok(npy::parse(contents, what).map_err(RunError::new)?.data)
        };
        let meta = get("meta")?;
        if meta.len() < 18 || meta[0] != VERSION {
            return Err(RunError::new(format!("{what}: unsupported checkpoint version")));
        }
        let lens = get("buffer_lengths")?;
        let matches = lens.len() == self.data.len()
            && lens.iter().zip(&self.data).all(|(l, d)| *l as usize == d.len())
            && meta[12] as usize == self.program.learnables.len();
        if !matches {
            return Err(RunError::new(format!(
                "{what}: the checkpoint was written for a different model (or batch size); its buffers do not match"
            )));
        }
        for k in 0..self.data.len() {
            refill(&mut self.data[k], get(&format!("buffer{k}"))?);
        }
        for k in 0..self.program.learnables.len() {
            refill(&mut self.optim.m[k], get(&format!("adam_m{k}"))?);
            refill(&mut self.optim.s[k], get(&format!("adam_s{k}"))?);
        }
        self.step = meta[1] as u64;
        self.optim.t = meta[2] as u64;
        self.optim.lr_scale = meta[3];
        self.best_loss = (!meta[4].is_nan()).then_some(meta[4]);
        self.bad_epochs = meta[5] as usize;
        self.feed_step = meta[10] as usize;
        self.epochs = get("epochs")?.iter().map(|e| *e as u64).collect();
        self.feed = if meta[6] == 1.0 {
            Some(data::Feed {
                dataset: meta[7] as usize,
                test: meta[8] == 1.0,
                order: get("feed_order")?.iter().map(|i| *i as usize).collect(),
                steps_per_sample: meta[9] as usize,
                batch: self.batch(),
            })
        } else {
            None
        };
        self.saved_params.clear();
        for j in 0..meta[13] as usize {
            let prefix = format!("saved{j}_");
            let (name, _) = members
                .iter()
                .find(|(n, _)| n.starts_with(&prefix))
                .ok_or_else(|| RunError::new(format!("{what}: truncated checkpoint")))?;
            let buf: usize = name[prefix.len()..name.len() - 4]
                .parse()
                .map_err(|_| RunError::new(format!("{what}: corrupt checkpoint")))?;
            self.saved_params.push((buf, get(&name[..name.len() - 4])?));
        }
        self.metrics.loss_sum = meta[14];
        self.metrics.loss_count = meta[15] as usize;
        self.metrics.correct = meta[16] as usize;
        self.metrics.samples = meta[17] as usize;
        self.metrics.sums = get("metric_sums")?;
        if let Some(window) = self.adjoint.as_mut()
            && !window.restore(get("adjoint_window")?)
        {
            return Err(RunError::new(format!("{what}: corrupt checkpoint (adjoint window)")));
        }
        self.resume = Some(self.step);
        Ok(())
    }
}
