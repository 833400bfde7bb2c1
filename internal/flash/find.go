package flash

// FindBmap returns the bmap Write would use for image when Options.Bmap
// is empty: IMAGE.bmap, then with extensions removed one by one
// (foo.wic.zst.bmap, foo.wic.bmap, foo.bmap); "" when there is none.
func FindBmap(image string) string { return findBmap(image) }
