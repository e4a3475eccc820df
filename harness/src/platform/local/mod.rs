pub mod flexvolume;
